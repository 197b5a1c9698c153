"""Typed configs, one per command, composed from small option groups.

Each field's docstring is its help text. The CLI flags (``--max-steps``) and the YAML keys
(``max_steps:``) are generated from the same fields, so a config file and a command line say the same
thing. ``tether validate CONFIG.yaml`` checks a file against these classes without loading anything.
"""

from __future__ import annotations

from tether.config.evaluation import (
    DEFAULT_ATTACKS,
    EvalConfig,
    EvalRescoreConfig,
    JudgeOptions,
    JudgeRefusalConfig,
    RedteamConfig,
    TargetOptions,
)
from tether.config.files import build_config, dump_config, load_config, located, read_yaml, validate_file
from tether.config.options import DataOptions, LoraOptions, ModelOptions, Options, TrainingConfig, TrainOptions
from tether.config.reward import RewardTrainOptions, RMEvalConfig, RMScoreConfig, RMTrainConfig
from tether.config.rl import (
    RL_CONFIGS,
    GRPOConfig,
    GRPOOptions,
    PolicyUpdateOptions,
    PPOConfig,
    PPOOptions,
    RLConfig,
    RLOOConfig,
    RLOOOptions,
    RLOptions,
    RLTrainOptions,
    RolloutOptions,
)
from tether.config.training import (
    PREFERENCE_CONFIGS,
    DemoConfig,
    DPOConfig,
    DPOOptions,
    KTOConfig,
    KTOOptions,
    ORPOConfig,
    ORPOOptions,
    PairOptions,
    PreferenceConfig,
    PreferenceOptions,
    ReferenceOptions,
    SFTConfig,
    SFTOptions,
    SimPOConfig,
    SimPOOptions,
)
from tether.config.unlearning import UnlearnConfig, UnlearnOptions

ReferenceConfig = DPOConfig | KTOConfig | UnlearnConfig
"""The commands whose loss needs the frozen start's log-probs (scored once, cached: tether.train.reference)."""

__all__ = [
    "DEFAULT_ATTACKS",
    "PREFERENCE_CONFIGS",
    "RL_CONFIGS",
    "DPOConfig",
    "DPOOptions",
    "DataOptions",
    "DemoConfig",
    "EvalConfig",
    "EvalRescoreConfig",
    "GRPOConfig",
    "GRPOOptions",
    "JudgeOptions",
    "JudgeRefusalConfig",
    "KTOConfig",
    "KTOOptions",
    "LoraOptions",
    "ModelOptions",
    "ORPOConfig",
    "ORPOOptions",
    "Options",
    "PPOConfig",
    "PPOOptions",
    "PairOptions",
    "PolicyUpdateOptions",
    "PreferenceConfig",
    "PreferenceOptions",
    "RLConfig",
    "RLOOConfig",
    "RLOOOptions",
    "RLOptions",
    "RLTrainOptions",
    "RMEvalConfig",
    "RMScoreConfig",
    "RMTrainConfig",
    "RedteamConfig",
    "ReferenceConfig",
    "ReferenceOptions",
    "RewardTrainOptions",
    "RolloutOptions",
    "SFTConfig",
    "SFTOptions",
    "SimPOConfig",
    "SimPOOptions",
    "TargetOptions",
    "TrainOptions",
    "TrainingConfig",
    "UnlearnConfig",
    "UnlearnOptions",
    "build_config",
    "dump_config",
    "load_config",
    "located",
    "read_yaml",
    "validate_file",
]
