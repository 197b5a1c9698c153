"""Reward models after training: scoring, evaluation (``tether rm eval``, ``rm score``) and the reward
sources that online RL composes (a reward model, a judge, any Python callable)."""
