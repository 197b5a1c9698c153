"""The closed loop: signal from red-team campaigns, guard reviews, Constitutional AI and preference files,
merged with provenance, trained on, measured on both axes, reported iteration by iteration."""
