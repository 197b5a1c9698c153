"""Unlearning evaluation: what a model knows of a fact set, membership inference, the relearning attack."""
