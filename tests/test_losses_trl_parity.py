"""Parity of tether's preference losses with TRL's implementations on identical fp64 tensors.

TRL 1.16 computes DPO and KTO losses inside ``_compute_loss(self, model, inputs, return_outputs)``, which also
runs the model. We call those methods unchanged with a stub ``self`` (a ``SimpleNamespace`` holding the
attributes they read) and a stub model whose per-token log-probs sum to our summed log-probs; reference
log-probs go in as precomputed (``precompute_ref_logps=True``). CPO/SimPO and ORPO expose pure loss methods
(``CPOTrainer.cpo_loss``, ``ORPOTrainer.odds_ratio_loss``), called with a stub ``self`` directly.

Which TRL code checks which tether loss:

- sigmoid, hinge, ipo, robust:  ``DPOTrainer._compute_loss`` with ``loss_type`` of the same name
- bco (delta = 0):              ``DPOTrainer._compute_loss``, ``loss_type="bco_pair"`` (TRL 1.16 has no running
                                mean delta, so only delta = 0 is comparable)
- with_nll(sigmoid) (RPO):      ``DPOTrainer._compute_loss``, ``loss_type=["sigmoid", "sft"]``,
                                ``loss_weights=[1, alpha]``
- cdpo:                         ``CPOTrainer.cpo_loss``, ``loss_type="sigmoid"`` with ``label_smoothing``, fed the
                                log-ratios ``pc - rc`` and ``pr - rr`` as its "log-probs" (TRL 1.16's DPO sigmoid
                                dropped label smoothing; CPO's is the same conservative formula)
- simpo:                        ``CPOTrainer.cpo_loss``, ``loss_type="simpo"``, fed per-token average log-probs
- orpo (odds-ratio term):       ``ORPOTrainer.odds_ratio_loss``, fed per-token average log-probs. TRL's NLL term
                                comes from the logits (token mean over the batch), so only the odds-ratio term and
                                the rewards are compared. TRL computes it in fp32; the differences (~1e-7) are within
                                the same 1e-6 tolerance.
- kto, kto_reference_point:     ``KTOTrainer._compute_loss`` (mean loss, KL reference point, reward means)
"""

from __future__ import annotations

import contextlib
import types
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("trl")

from trl import DPOTrainer, KTOTrainer
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

from tether.losses import (
    PAIRED_LOSSES,
    PreferenceBatchLogps,
    PreferenceLossParams,
    kto_loss,
    kto_reference_point,
    per_token,
    with_nll,
)

TOL = {"rtol": 1e-6, "atol": 1e-6}
B, T = 8, 12  # pairs, and the padded sequence width the stub model sees


def random_logps(seed: int = 0) -> PreferenceBatchLogps:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T, (2, B), generator=g)
    policy = -lengths * (0.2 + 2 * torch.rand(2, B, generator=g, dtype=torch.float64))
    ref = policy + torch.randn(2, B, generator=g, dtype=torch.float64)
    ref = ref.clamp(max=-1e-3)
    return PreferenceBatchLogps(policy[0], policy[1], ref[0], ref[1], lengths[0], lengths[1])


# --- stubs --------------------------------------------------------------------------------------------------


def accelerator() -> SimpleNamespace:
    return SimpleNamespace(
        device=torch.device("cpu"),
        gather=lambda t: t,
        gather_for_metrics=lambda t: t,
        autocast=contextlib.nullcontext,
        unwrap_model=lambda m: m,
    )


def completion(logps: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-aligned completion mask ``[N, T]`` and per-token log-probs ``[N, T-1]`` summing to ``logps``."""
    positions = torch.arange(T)
    mask = (positions >= T - lengths[:, None]).long()
    per_token_logps = (logps / lengths)[:, None] * mask[:, 1:]
    return mask, per_token_logps


class StubLM:
    """Returns fixed per-token log-probs, chosen by the marker token filling ``input_ids``."""

    training = True

    def __init__(self, by_marker: dict[int, torch.Tensor]) -> None:
        self.by_marker = by_marker

    def __call__(self, input_ids: torch.Tensor, **_: object) -> SimpleNamespace:
        log_probs = self.by_marker[int(input_ids[0, 0])]
        zeros = torch.zeros_like(log_probs)
        return SimpleNamespace(log_probs=log_probs, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())


def trl_dpo(logps: PreferenceBatchLogps, i: int, *, beta: float, loss_types: list[str], loss_weights=None, eps=0.0):
    """TRL's DPO loss and logged rewards for pair ``i`` alone (TRL returns the batch mean)."""
    row = slice(i, i + 1)
    both = torch.cat([logps.policy_chosen[row], logps.policy_rejected[row]])
    lengths = torch.cat([logps.chosen_lengths[row], logps.rejected_lengths[row]])
    mask, per_token_logps = completion(both, lengths)
    stub = SimpleNamespace(
        model=StubLM({0: per_token_logps}),
        accelerator=accelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=loss_types,
        loss_weights=loss_weights or [1.0] * len(loss_types),
        beta=beta,
        label_smoothing=eps,
        use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros(2, T, dtype=torch.long),
        "attention_mask": torch.ones(2, T, dtype=torch.long),
        "completion_mask": mask,
        "ref_chosen_logps": logps.ref_chosen[row],
        "ref_rejected_logps": logps.ref_rejected[row],
    }
    loss = DPOTrainer._compute_loss(stub, stub.model, inputs, return_outputs=False)
    metrics = stub._metrics["train"]
    return loss, metrics["rewards/chosen"][-1], metrics["rewards/rejected"][-1]


# --- DPOTrainer ---------------------------------------------------------------------------------------------

DPO_VARIANTS = [  # (tether name, TRL loss_type, beta, label_smoothing)
    ("sigmoid", "sigmoid", 0.1, 0.0),
    ("sigmoid", "sigmoid", 0.7, 0.0),
    ("hinge", "hinge", 0.3, 0.0),
    ("ipo", "ipo", 0.1, 0.0),
    ("ipo", "ipo", 0.8, 0.0),
    ("robust", "robust", 0.1, 0.2),
    ("robust", "robust", 0.5, 0.0),
    ("bco", "bco_pair", 0.2, 0.0),
]


@pytest.mark.parametrize(("name", "trl_type", "beta", "eps"), DPO_VARIANTS)
def test_matches_trl_dpo_trainer(name: str, trl_type: str, beta: float, eps: float) -> None:
    logps = random_logps(seed=int(beta * 10))
    ours = PAIRED_LOSSES[name](logps, PreferenceLossParams(beta=beta, label_smoothing=eps))
    for i in range(B):
        loss, chosen_reward, rejected_reward = trl_dpo(logps, i, beta=beta, loss_types=[trl_type], eps=eps)
        torch.testing.assert_close(ours.losses[i], loss, **TOL)
        assert ours.chosen_rewards[i].item() == pytest.approx(chosen_reward, rel=1e-6, abs=1e-6)
        assert ours.rejected_rewards[i].item() == pytest.approx(rejected_reward, rel=1e-6, abs=1e-6)


def test_rpo_matches_trl_sigmoid_plus_sft() -> None:
    logps, beta, alpha = random_logps(seed=3), 0.1, 0.6
    ours = with_nll(PAIRED_LOSSES["sigmoid"], alpha)(logps, PreferenceLossParams(beta=beta))
    for i in range(B):
        loss, _, _ = trl_dpo(logps, i, beta=beta, loss_types=["sigmoid", "sft"], loss_weights=[1.0, alpha])
        torch.testing.assert_close(ours.losses[i], loss, **TOL)


def test_ipo_parity_depends_on_length_normalisation() -> None:
    """Guard against a vacuous IPO check: TRL's value differs from IPO on summed log-ratios."""
    logps, beta = random_logps(seed=1), 0.1
    i = int(torch.nonzero((logps.chosen_lengths > 1) & (logps.rejected_lengths > 1))[0])
    loss, _, _ = trl_dpo(logps, i, beta=beta, loss_types=["ipo"])
    chosen = logps.policy_chosen[i] - logps.ref_chosen[i]
    rejected = logps.policy_rejected[i] - logps.ref_rejected[i]
    assert not torch.isclose(loss, (chosen - rejected - 1 / (2 * beta)) ** 2)


# --- CPOTrainer / ORPOTrainer -------------------------------------------------------------------------------


def cpo_stub(loss_type: str, beta: float, eps: float = 0.0, gamma: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(
        accelerator=accelerator(), loss_type=loss_type, beta=beta, label_smoothing=eps, simpo_gamma=gamma, alpha=0.0
    )


@pytest.mark.parametrize(("beta", "eps"), [(0.1, 0.0), (0.1, 0.1), (0.5, 0.3)])
def test_cdpo_matches_trl_cpo_sigmoid_on_log_ratios(beta: float, eps: float) -> None:
    logps = random_logps(seed=4)
    ours = PAIRED_LOSSES["cdpo"](logps, PreferenceLossParams(beta=beta, label_smoothing=eps))
    chosen, rejected = logps.policy_chosen - logps.ref_chosen, logps.policy_rejected - logps.ref_rejected
    losses, chosen_rewards, rejected_rewards = CPOTrainer.cpo_loss(cpo_stub("sigmoid", beta, eps), chosen, rejected)
    torch.testing.assert_close(ours.losses, losses, **TOL)
    torch.testing.assert_close(ours.chosen_rewards, chosen_rewards, **TOL)
    torch.testing.assert_close(ours.rejected_rewards, rejected_rewards, **TOL)


@pytest.mark.parametrize(("beta", "gamma"), [(2.0, 0.5), (2.5, 1.4), (0.1, 0.0)])
def test_simpo_matches_trl_cpo_simpo(beta: float, gamma: float) -> None:
    logps = random_logps(seed=5)
    ours = PAIRED_LOSSES["simpo"](logps, PreferenceLossParams(beta=beta, gamma=gamma))
    chosen = per_token(logps.policy_chosen, logps.chosen_lengths)
    rejected = per_token(logps.policy_rejected, logps.rejected_lengths)
    losses, chosen_rewards, rejected_rewards = CPOTrainer.cpo_loss(
        cpo_stub("simpo", beta, gamma=gamma), chosen, rejected
    )
    torch.testing.assert_close(ours.losses, losses, **TOL)
    torch.testing.assert_close(ours.chosen_rewards, chosen_rewards, **TOL)
    torch.testing.assert_close(ours.rejected_rewards, rejected_rewards, **TOL)


@pytest.mark.parametrize("lam", [0.1, 1.0])
def test_orpo_odds_ratio_matches_trl(lam: float) -> None:
    logps = random_logps(seed=6)
    ours = PAIRED_LOSSES["orpo"](logps, PreferenceLossParams(beta=lam, orpo_lambda=lam))
    chosen = per_token(logps.policy_chosen, logps.chosen_lengths)
    rejected = per_token(logps.policy_rejected, logps.rejected_lengths)
    stub = SimpleNamespace(accelerator=accelerator(), beta=lam)
    losses, chosen_rewards, rejected_rewards, _, log_odds = ORPOTrainer.odds_ratio_loss(stub, chosen, rejected)
    # TRL: loss = nll - mean(beta * log sigma(log odds ratio)); ours per pair: nll + lambda * (-log sigma(...))
    torch.testing.assert_close(lam * ours.terms["odds_ratio"], -losses.double(), **TOL)
    torch.testing.assert_close(ours.losses, ours.terms["nll"] - losses.double(), **TOL)
    assert ours.terms["log_odds_ratio"].mean().item() == pytest.approx(log_odds.item(), rel=1e-6, abs=1e-6)
    torch.testing.assert_close(ours.chosen_rewards, chosen_rewards.double(), **TOL)
    torch.testing.assert_close(ours.rejected_rewards, rejected_rewards.double(), **TOL)


# --- KTOTrainer ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "kl_shift"),
    [
        ([1, 0, 1, 1, 0, 0, 1, 0], 0.7),  # mixed, z0 > 0
        ([1, 0, 0, 1, 0, 1, 1, 0], -5.0),  # mixed, mean KL estimate < 0: z0 clamps to 0
        ([1] * 8, 0.3),  # no undesirable examples
        ([0] * 8, 0.3),  # no desirable examples
    ],
)
def test_kto_matches_trl_kto_trainer(labels: list[int], kl_shift: float) -> None:
    beta, w_d, w_u = 0.3, 1.0, 1.33
    data, kl = random_logps(seed=7), random_logps(seed=8)
    policy, ref, lengths = data.policy_chosen, data.ref_chosen, data.chosen_lengths
    policy_kl, ref_kl = kl.policy_chosen, kl.policy_chosen - kl_shift + 0.1 * torch.randn(B, dtype=torch.float64)
    desirable = torch.tensor(labels, dtype=torch.bool)

    z0 = kto_reference_point(policy_kl, ref_kl)
    ours = kto_loss(
        policy[desirable],
        ref[desirable],
        policy[~desirable],
        ref[~desirable],
        z0=z0,
        beta=beta,
        desirable_weight=w_d,
        undesirable_weight=w_u,
    )

    mask, per_token_logps = completion(policy, lengths)
    kl_mask, kl_per_token_logps = completion(policy_kl, kl.chosen_lengths)
    stub = SimpleNamespace(
        model=StubLM({0: per_token_logps, 1: kl_per_token_logps}),
        accelerator=accelerator(),
        calculate_KL=True,
        precompute_ref_logps=True,
        aux_loss_enabled=False,
        loss_type="kto",
        beta=beta,
        desirable_weight=w_d,
        undesirable_weight=w_u,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
    )
    stub._compute_kl_logps = types.MethodType(KTOTrainer._compute_kl_logps, stub)
    inputs = {
        "label": desirable,
        "input_ids": torch.zeros(B, T, dtype=torch.long),
        "attention_mask": torch.ones(B, T, dtype=torch.long),
        "completion_mask": mask,
        "KL_input_ids": torch.ones(B, T, dtype=torch.long),
        "KL_attention_mask": torch.ones(B, T, dtype=torch.long),
        "KL_completion_mask": kl_mask,
        "ref_logps": ref,
        "ref_KL_logps": ref_kl,
    }
    loss = KTOTrainer._compute_loss(stub, stub.model, inputs, return_outputs=False)
    metrics = stub._metrics["train"]

    torch.testing.assert_close(ours.losses.mean(), loss, **TOL)
    assert z0.item() == pytest.approx(metrics["kl"][-1], rel=1e-6, abs=1e-6)
    assert (z0.item() == 0.0) == (kl_shift < 0)
    if desirable.any():
        assert ours.chosen_rewards.mean().item() == pytest.approx(metrics["rewards/chosen"][-1], rel=1e-6, abs=1e-6)
    if (~desirable).any():
        assert ours.rejected_rewards.mean().item() == pytest.approx(metrics["rewards/rejected"][-1], rel=1e-6)
