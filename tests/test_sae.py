"""Sparse autoencoders: the four architectures' losses and estimators, training on a store (resumable),
the metrics (explained variance by hand, CE loss recovered on the tiny model), SAELens's format, cards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tether.errors import DataError, UsageError
from tether.interp.sae.architectures import JumpReLUFunction, SparseAutoencoder, StepFunction
from tether.interp.sae.config import SaeCardsConfig, SaeEvalConfig, SaeTrainConfig
from tether.interp.sae.metrics import ReconstructionStats, ce_loss_recovered, reconstruction_metrics, store_batches
from tether.interp.sae.saelens import load_sae, save_sae
from tether.interp.sae.train import explained_variance, run_sae_train
from tether.interp.store import ActivationStore, ActivationWriter

REPO = Path(__file__).resolve().parents[1]
D, FEATURES = 32, 48


def directions() -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(FEATURES, D, generator=torch.Generator().manual_seed(1)), dim=1)


def sparse_data(n: int, seed: int) -> torch.Tensor:
    """Sums of about 3 of 48 known unit directions with coefficients in [0.5, 1.5]."""
    gen = torch.Generator().manual_seed(seed)
    on = torch.rand(n, FEATURES, generator=gen) < 3 / FEATURES
    return ((0.5 + torch.rand(n, FEATURES, generator=gen)) * on) @ directions()


def write_store(folder: Path, x: torch.Tensor, per_example: int = 50, budget: int = 20_000, meta=None) -> Path:
    writer = ActivationWriter(folder, ["resid_post.0"], d_model=x.shape[1], budget_bytes=budget, meta=meta or {})
    for number, start in enumerate(range(0, x.shape[0], per_example)):
        part = x[start : start + per_example]
        n = part.shape[0]
        columns = {"example": torch.full((n,), number), "position": torch.arange(n), "token_id": torch.arange(n) % 7}
        writer.add(columns, {"resid_post.0": part}, examples=1)
    writer.close()
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread (on a busy 2-core machine, thread hand-offs cost more than the work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("sae")
    return write_store(root / "train", sparse_data(12_000, 0)), write_store(root / "heldout", sparse_data(2_000, 9))


def train_config(stores, out: Path, **overrides) -> SaeTrainConfig:
    settings = dict(
        activations=stores[0], out=out, d_sae=64, k=4, batch_size=256, tokens=256 * 60, buffer_tokens=2048,
        lr=1e-2, log_every=10, checkpoint_every=25, progress=False, dead_window=256 * 20,
    )  # fmt: skip
    return SaeTrainConfig(**(settings | overrides))


def test_explained_variance_by_hand_on_three_rows():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    x_hat = torch.tensor([[1.0, 2.0], [3.0, 5.0], [5.0, 6.0]])
    # mean (3, 4): sum ||x - mean||^2 = 8 + 0 + 8 = 16; sum ||x - x_hat||^2 = 1
    assert explained_variance(x, x_hat) == pytest.approx(1 - 1 / 16)
    stats = ReconstructionStats(2, 3)
    f = torch.tensor([[1.0, 0, 0], [0.5, 2.0, 0], [1.0, 0, 0]])
    stats.update(x[:2], x_hat[:2], f[:2])
    stats.update(x[2:], x_hat[2:], f[2:])
    result = stats.result()
    assert result["explained_variance"] == pytest.approx(15 / 16)
    assert result["mse"] == pytest.approx(1 / 6) and result["mse_per_token"] == pytest.approx(1 / 3)
    assert result["l0"] == pytest.approx(4 / 3)
    assert result["dead"] == 1 and result["dense"] == 2  # latent 2 never fires; 0 and 1 fire on > 10%


def test_topk_keeps_exactly_k_latents():
    sae = SparseAutoencoder(D, 64, "topk", k=5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc += 10  # every pre-activation positive: ReLU removes none of the k
    x = torch.randn(40, D)
    assert ((sae.encode(x) != 0).sum(-1) == 5).all()
    out = sae.train_step(x, 0.0, None)
    assert float(out.l0) == 5


def _dense_topk_loss(sae: SparseAutoencoder, x: torch.Tensor, dead: torch.Tensor, k: int, k_aux: int) -> torch.Tensor:
    """The TopK + AuxK loss with plain dense autograd (the reference of the sparse passes)."""
    z = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    values, idx = z.topk(k, dim=-1)
    f = torch.zeros_like(z).scatter(-1, idx, torch.relu(values))
    x_hat = f @ sae.W_dec + sae.b_dec
    mse = (x_hat - x).pow(2).sum(-1).mean()
    dead_z = torch.where(dead, z, torch.full_like(z, -float("inf")))
    aux_v, aux_i = dead_z.topk(k_aux, dim=-1)
    e_hat = torch.zeros_like(z).scatter(-1, aux_i, torch.relu(aux_v)) @ sae.W_dec
    aux = (e_hat - (x - x_hat).detach()).pow(2).sum(-1).mean()
    return mse + sae.aux_coefficient * aux


def test_sparse_topk_gradients_equal_dense_autograd():
    torch.manual_seed(0)
    sae = SparseAutoencoder(
        D, 64, "topk", k=4, aux_k=6, aux_coefficient=0.5, generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(D) * 0.1)
        sae.b_enc.copy_(torch.randn(64) * 0.1)
    x = torch.randn(32, D)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[::5] = True
    sparse = sae.train_step(x, 0.0, dead)
    sparse.loss.backward()
    got = {n: p.grad.clone() for n, p in sae.named_parameters()}
    sae.zero_grad()
    reference = _dense_topk_loss(sae, x, dead, 4, 6)
    reference.backward()
    torch.testing.assert_close(sparse.loss, reference)
    for name, param in sae.named_parameters():
        torch.testing.assert_close(got[name], param.grad, msg=name)


def test_batchtopk_keeps_k_per_token_on_average_and_learns_a_threshold():
    sae = SparseAutoencoder(D, 64, "batchtopk", k=3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc += 10
    x = torch.randn(20, D)
    out = sae.train_step(x, 0.0, None)
    assert float(out.l0) == 3  # 60 activations over 20 tokens, however they fall
    z = sae.pre(x)
    sixtieth = z.detach().reshape(-1).topk(60).values[-1]
    assert float(sae.threshold) == float(sixtieth)  # the first batch's smallest kept activation
    # inference keeps z > theta (SAELens's JumpReLU): the same activations but the one at the threshold
    assert int((sae.encode(x) != 0).sum()) == 59


def test_jumprelu_straight_through_gradients_by_hand():
    z = torch.tensor([[0.502], [0.498], [0.7]], requires_grad=True)
    theta = torch.tensor([0.5], requires_grad=True)
    out = JumpReLUFunction.apply(z, theta, 0.01)
    assert out.detach().squeeze().tolist() == pytest.approx([0.502, 0.0, 0.7])
    out.sum().backward()
    # two of three z within eps/2 of theta: d/dtheta = -(theta / eps) * 2 = -100; d/dz = H(z - theta)
    assert theta.grad.item() == pytest.approx(-100.0)
    assert z.grad.squeeze().tolist() == [1.0, 0.0, 1.0]
    theta.grad = None
    z.grad = None
    StepFunction.apply(z, theta, 0.01).sum().backward()
    assert theta.grad.item() == pytest.approx(-200.0)  # -(1 / eps) * 2
    assert z.grad is None  # no gradient reaches z through H


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "relu", "jumprelu"])
def test_training_recovers_the_sparse_directions(stores, tmp_path, architecture):
    settings = {"l1_coefficient": 1.0, "l0_coefficient": 2.0, "bandwidth": 0.1, "threshold": 0.1}
    config = train_config(stores, tmp_path / "run", architecture=architecture, tokens=256 * 120, **settings)
    summary = run_sae_train(config, console=None)
    sae, cfg = load_sae(tmp_path / "run" / "sae")
    assert cfg["architecture"] == {"relu": "standard", "batchtopk": "jumprelu"}.get(architecture, architecture)
    before = reconstruction_metrics(
        SparseAutoencoder(D, 64, architecture, k=4),
        store_batches(ActivationStore(stores[1]), "resid_post.0", 500, None),
    )
    held = reconstruction_metrics(sae, store_batches(ActivationStore(stores[1]), "resid_post.0", 500, None))
    assert held["explained_variance"] > 0.8 > before["explained_variance"]
    assert held["l0"] < 12
    cosines = torch.nn.functional.normalize(sae.W_dec, dim=1) @ directions().t()
    assert (cosines.max(0).values > 0.8).float().mean() > 0.5  # most true directions have a latent
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, 121, 10)) and summary["steps"] == 120


def test_resume_after_a_stop_continues_identically(stores, tmp_path):
    full = run_sae_train(train_config(stores, tmp_path / "full"), console=None)
    stopped = run_sae_train(train_config(stores, tmp_path / "split"), console=None, stop_at=37)
    assert stopped["step"] == 30 and not (tmp_path / "split" / "sae").exists()
    state = json.loads((tmp_path / "split" / "checkpoints" / "state.json").read_text())
    assert state["step"] == 37 and len(list((tmp_path / "split" / "checkpoints").glob("step-*"))) == 1
    with pytest.raises(UsageError, match="--resume to continue"):
        run_sae_train(train_config(stores, tmp_path / "split"), console=None)
    with pytest.raises(UsageError, match="started with batch_size 256, not 128"):
        run_sae_train(train_config(stores, tmp_path / "split", resume=True, batch_size=128), console=None)
    resumed = run_sae_train(train_config(stores, tmp_path / "split", resume=True), console=None)
    timing = ("tokens_per_second", "trained_tokens")
    assert {k: v for k, v in resumed["final"].items() if k not in timing} == {
        k: v for k, v in full["final"].items() if k not in timing
    }
    assert (tmp_path / "split" / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()
    a = (tmp_path / "full" / "sae" / "sae_weights.safetensors").read_bytes()
    assert a == (tmp_path / "split" / "sae" / "sae_weights.safetensors").read_bytes()


def test_training_errors_name_the_store_and_the_setting(stores, tmp_path):
    with pytest.raises(DataError, match=r"train: has no site 'mlp_out\.0'"):
        run_sae_train(train_config(stores, tmp_path / "a", site="mlp_out.0"), console=None)
    with pytest.raises(UsageError, match="--k 200 exceeds the SAE's 64 latents"):
        run_sae_train(train_config(stores, tmp_path / "b", k=200, d_sae=None, expansion=2), console=None)
    with pytest.raises(ValueError, match=r"k \(200\) exceeds d_sae \(64\)"):
        train_config(stores, tmp_path / "b", k=200)
    with pytest.raises(ValueError, match="fewer tokens"):
        train_config(stores, tmp_path / "c", tokens=100)


def _saes() -> list[SparseAutoencoder]:
    out = []
    for i, architecture in enumerate(["relu", "topk", "batchtopk", "jumprelu"]):
        sae = SparseAutoencoder(D, 40, architecture, k=4, generator=torch.Generator().manual_seed(i))  # type: ignore[arg-type]
        with torch.no_grad():
            for p in (sae.b_enc, sae.b_dec):
                p.copy_(torch.randn(p.shape) * 0.2)
            sae.W_enc.mul_(1.5)
            if architecture in ("jumprelu", "batchtopk"):
                sae.threshold.copy_(torch.rand(sae.threshold.shape) * 0.3)
        out.append(sae)
    return out


def test_saelens_format_round_trip_folds_the_input_scale(tmp_path):
    x = torch.randn(30, D) * 3
    for sae in _saes():
        folder = save_sae(tmp_path / sae.architecture, sae, scale=0.5, metadata={"tether_site": "resid_post.2"})
        cfg = json.loads((folder / "cfg.json").read_text())
        assert cfg["metadata"]["hook_name"] == "blocks.2.hook_resid_post"
        back, _ = load_sae(folder)
        assert back.architecture == sae.architecture
        with torch.no_grad():
            # the saved SAE reads raw x: its reconstruction is the trained one's of 0.5 x, scaled back
            torch.testing.assert_close(back.encode(x), sae.encode(0.5 * x))
            torch.testing.assert_close(back(x), sae(0.5 * x) / 0.5)
    (tmp_path / "bad").mkdir()
    with pytest.raises(DataError, match=r"bad: not an SAE folder"):
        load_sae(tmp_path / "bad")


def test_a_saelens_topk_with_decoder_norm_rescaling_loads_folded(tmp_path):
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(3)
    w_enc, w_dec = torch.randn(D, 40, generator=gen), torch.randn(40, D, generator=gen)  # rows not unit norm
    b_enc, b_dec = torch.randn(40, generator=gen), torch.randn(D, generator=gen)
    (tmp_path / "sae").mkdir()
    save_file(
        {"W_enc": w_enc, "W_dec": w_dec, "b_enc": b_enc, "b_dec": b_dec},
        str(tmp_path / "sae" / "sae_weights.safetensors"),
    )
    cfg = {"architecture": "topk", "d_in": D, "d_sae": 40, "k": 3, "rescale_acts_by_decoder_norm": True}
    (tmp_path / "sae" / "cfg.json").write_text(json.dumps(cfg))
    sae, _ = load_sae(tmp_path / "sae")
    x = torch.randn(5, D, generator=gen)
    norms = w_dec.norm(dim=1)
    z = ((x - b_dec) @ w_enc + b_enc) * norms  # SAELens's TopKSAE.encode with the rescaling
    values, idx = z.topk(3, dim=-1)
    f = torch.zeros_like(z).scatter(-1, idx, values.relu())
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), f)
        torch.testing.assert_close(sae.decode(f), (f / norms) @ w_dec + b_dec)


SAELENS_CHECK = """
import json, sys, torch
from safetensors.torch import load_file
from sae_lens import SAE
out = {}
for name in sys.argv[2:]:
    sae = SAE.load_from_disk(f"{sys.argv[1]}/{name}")
    x = load_file(f"{sys.argv[1]}/x.safetensors")["x"]
    with torch.no_grad():
        f = sae.encode(x)
        out[name] = {"arch": sae.cfg.architecture(), "f": f.tolist(), "x_hat": sae.decode(f).tolist()}
print(json.dumps(out))
"""


def _saelens_python() -> list[str] | None:
    try:
        import sae_lens  # noqa: F401

        return [sys.executable]
    except ImportError:
        peer = REPO / ".venv-sae-lens" / "bin" / "python"
        return [str(peer)] if peer.exists() else None


def test_saelens_loads_tethers_saes_and_computes_the_same(tmp_path):
    python = _saelens_python()
    if python is None:
        pytest.skip("sae_lens is not importable (benchmarks/requirements-sae-lens.txt installs it in .venv-sae-lens)")
    from safetensors.torch import save_file

    x = torch.randn(12, D)
    saes = _saes()
    for sae in saes:
        save_sae(tmp_path / sae.architecture, sae)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    names = [s.architecture for s in saes]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [*python, "-c", SAELENS_CHECK, str(tmp_path), *names], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for sae in saes:
        got = theirs[sae.architecture]
        assert got["arch"] == {"relu": "standard", "batchtopk": "jumprelu"}.get(sae.architecture, sae.architecture)
        with torch.no_grad():
            f = sae.encode(x)
            torch.testing.assert_close(torch.tensor(got["f"]), f, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(torch.tensor(got["x_hat"]), sae.decode(f), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    """The tiny model, a store of its resid_post.0 on a few texts, and an SAE trained on it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tether.interp.hooks import recording
    from tether.interp.sites import Site

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["How do I bake bread?", "Tell me a story about a fox", "What is the capital of France?"] * 4
    root = tmp_path_factory.mktemp("tiny-sae")
    writer = ActivationWriter(root / "acts", ["resid_post.0"], d_model=32, meta={"model": str(tiny_model_dir)})
    with torch.no_grad(), recording(model, [Site("resid_post", 0)]) as seen:
        for number, text in enumerate(texts):
            ids = tokenizer(text, return_tensors="pt")["input_ids"]
            model(input_ids=ids)
            n = ids.shape[1]
            columns = {"example": torch.full((n,), number), "position": torch.arange(n), "token_id": ids[0]}
            writer.add(columns, {"resid_post.0": seen[Site("resid_post", 0)][0]}, examples=1)
    writer.close()
    config = SaeTrainConfig(
        activations=root / "acts", out=root / "run", d_sae=64, k=4, batch_size=16, tokens=16 * 40, progress=False
    )
    run_sae_train(config, console=None)
    batch = tokenizer(texts[:3], return_tensors="pt", padding=True)
    return model, tokenizer, root, [{"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}]


def test_ce_loss_recovered_is_one_for_identity_and_zero_for_ablation(tiny):
    from tether.interp.sites import Site

    model, _, _, batches = tiny
    site = Site("resid_post", 0)
    identity = ce_loss_recovered(model, batches, site, lambda x: x)
    assert identity["ce_loss_recovered"] == 1.0 and identity["ce_spliced"] == identity["ce_clean"]
    zero = ce_loss_recovered(model, batches, site, torch.zeros_like)
    assert zero["ce_loss_recovered"] == 0.0 and zero["ce_zero_ablation"] != zero["ce_clean"]
    # Positions below skip_first keep their activation in both edits: a zero "reconstruction" then differs
    # from the full zero ablation, and is still exactly the (partial) zero ablation.
    kept = ce_loss_recovered(model, batches, site, torch.zeros_like, skip_first=1)
    assert kept["ce_loss_recovered"] == 0.0 and kept["ce_zero_ablation"] != zero["ce_zero_ablation"]
    assert ce_loss_recovered(model, batches, site, lambda x: x, skip_first=1)["ce_loss_recovered"] == 1.0


def test_eval_and_cards_on_the_tiny_model(tiny, tmp_path):
    from tether.interp.sae.cards import run_sae_cards
    from tether.interp.sae.metrics import run_sae_eval

    _, tokenizer, root, _ = tiny
    data = tmp_path / "texts.jsonl"
    data.write_text('{"text": "How do I bake bread?"}\n{"text": "A fox ran into the woods."}\n')
    result = run_sae_eval(
        SaeEvalConfig(sae=root / "run", activations=root / "acts", data=str(data), output=tmp_path / "eval.json"),
        console=None,
    )
    assert result["site"] == "resid_post.0" and result["tokens"] == ActivationStore(root / "acts").tokens
    assert result["ce_clean"] < result["ce_zero_ablation"] and result["ce_loss_recovered"] is not None
    assert json.loads((tmp_path / "eval.json").read_text())["l0"] == pytest.approx(result["l0"])
    cards = run_sae_cards(
        SaeCardsConfig(
            sae=root / "run" / "sae", activations=root / "acts", output=tmp_path / "cards.html", count=3, top=2
        ),
        console=None,
    )
    assert [c["feature"] for c in cards["cards"]] == sorted(c["feature"] for c in cards["cards"])
    assert 1 <= len(cards["cards"]) <= 3
    card = cards["cards"][0]
    first = card["examples"][0]
    assert card["max_activation"] == first["activation"] > 0
    # the highlighted piece is the token at that example's position
    ids = tokenizer(
        ["How do I bake bread?", "Tell me a story about a fox", "What is the capital of France?"][first["example"] % 3]
    )["input_ids"]
    assert first["pieces"][first["at"]] == tokenizer.decode([ids[first["position"]]])
    html = (tmp_path / "cards.html").read_text()
    assert f"Latent {card['feature']}" in html and "<mark>" in html
    with pytest.raises(UsageError, match=r"latents are 0\.\.63"):
        run_sae_cards(
            SaeCardsConfig(sae=root / "run", activations=root / "acts", output=tmp_path / "c.html", features="70"),
            console=None,
        )
