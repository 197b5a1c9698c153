"""The main job on the embedded default model (``make demo`` / ``tether demo``)."""
