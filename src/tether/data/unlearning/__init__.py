"""Team-written data for tether's unlearning demonstration (see facts.md)."""
