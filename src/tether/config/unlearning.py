"""Config of `tether unlearn`: RMU, gradient ascent, gradient difference, NPO and SimNPO."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from tether.config.options import Options, TrainingConfig
from tether.config.training import ReferenceOptions

UnlearnMethod = Literal["rmu", "grad-ascent", "grad-diff", "npo", "simnpo"]
DEFAULT_BETA = {"npo": 0.1, "simnpo": 2.5}
"""beta when not given: NPO's 0.1 (Zhang et al. 2024 on TOFU), SimNPO's 2.5 (tether's choice within the
range its authors tune, 1 to 5)."""


class UnlearnOptions(Options):
    panel: ClassVar[str] = "Unlearning"

    method: UnlearnMethod = "rmu"
    """rmu (representation misdirection, WMDP), grad-ascent, grad-diff, npo or simnpo; see
    tether.losses.unlearning for each loss."""
    forget: str
    """The forget set: conversations (prompt/completion or messages, as for `tether sft`) whose content the
    model should lose; the gradient losses and RMU's forget term act on the assistant tokens."""
    retain: str | None = None
    """The retain set, in the same format: knowledge to keep (required by every method but grad-ascent).
    Forget example i is paired with retain example order[i mod n], order a seeded permutation of the n."""
    retain_weight: float | None = Field(None, ge=0)
    """lambda, the weight of the retain NLL per token (grad-diff, npo, simnpo; default 1; grad-ascent 0)."""
    beta: float | None = Field(None, gt=0)
    """Inverse temperature of npo (default 0.1) and simnpo (default 2.5)."""
    gamma: float = Field(0.0, ge=0)
    """SimNPO's reward margin."""
    rmu_layer: int = Field(7, ge=0)
    """RMU: the decoder layer whose output is steered (the authors' layer_id 7)."""
    rmu_update_layers: list[int] = Field(default_factory=lambda: [5, 6, 7])
    """RMU: the decoder layers whose chosen weights are updated (the authors' layer_ids 5,6,7); repeat the flag."""
    rmu_params: str = "mlp.down_proj.weight"
    """RMU: comma-separated parameter names inside each update layer that are trained (the authors' param_ids
    6, which is mlp.down_proj.weight in Llama and Mistral layers); with --lora, those modules' adapters."""
    steering_coeff: float = Field(20.0, gt=0)
    """RMU: c, the norm of the random control vector forget states are pushed to (the authors' default 20;
    their Zephyr-7B run used 6.5). It must be large against the layer's activation norms (logged as
    rmu/forget_norm): SmolLM2-135M's layer-7 states have norm about 120, so c 20 moves nothing there."""
    alpha: float = Field(100.0, ge=0)
    """RMU: weight of the retain loss, the MSE to the frozen model's states (the authors' default 100; their
    Zephyr-7B run used 1200)."""
    lr: float = Field(5e-5, gt=0)
    """Peak learning rate (AdamW; the RMU authors' 5e-5)."""
    max_length: int = Field(512, ge=8)
    """Longest tokenized example (the RMU authors truncate at 512 tokens)."""
    scheduler: Literal["cosine", "linear", "constant"] = "constant"
    """Learning-rate schedule after warm-up (RMU steps at a constant rate)."""


class UnlearnConfig(UnlearnOptions, ReferenceOptions, TrainingConfig):
    """Unlearn a forget set while a retain set keeps the rest: RMU, gradient ascent or difference, NPO, SimNPO."""

    command: ClassVar[str] = "unlearn"
    file_only: ClassVar[frozenset[str]] = frozenset({"data"})

    data: str = Field("", exclude=True)
    """Set from `forget` (the recipe steps every training command shares read their file from `data`)."""

    @model_validator(mode="after")
    def _check(self) -> UnlearnConfig:
        if self.data not in ("", self.forget):
            raise ValueError("give the forget set as `forget`, not `data`")
        if self.data != self.forget:
            self.data = self.forget
        if self.retain is None and (self.method != "grad-ascent" or self.retain_lambda > 0):
            raise ValueError(f"--method {self.method} needs a retain set (`retain`)")
        if self.method == "rmu":
            if not self.rmu_update_layers:
                raise ValueError("rmu_update_layers is empty")
            if not any(name.strip() for name in self.rmu_params.split(",")):
                raise ValueError("rmu_params names no parameter")
            if any(layer > self.rmu_layer for layer in self.rmu_update_layers):
                raise ValueError(
                    f"rmu_update_layers {self.rmu_update_layers} include layers after rmu_layer {self.rmu_layer}, "
                    "which cannot change its output"
                )
        return self

    @property
    def retain_lambda(self) -> float:
        """lambda for the gradient losses: the given weight, else 0 for grad-ascent and 1 for the others."""
        if self.retain_weight is not None:
            return self.retain_weight
        return 0.0 if self.method == "grad-ascent" else 1.0

    @property
    def beta_value(self) -> float:
        """beta for npo and simnpo: the given one, else the method's default."""
        return self.beta if self.beta is not None else DEFAULT_BETA.get(self.method, 0.1)
