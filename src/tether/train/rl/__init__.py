"""Online RL from a reward: PPO (with a value model), RLOO and GRPO (critic-free) on one rollout machinery."""
