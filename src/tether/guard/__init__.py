"""Guard: runtime rails around a model.

Input rails check a request before the model sees it, output rails check the answer before the user does.
Each rail is a detector from :mod:`tether.guard.detectors` (a verdict, a score and a reason per text),
run by :mod:`tether.guard.pipeline` on the normalised text and on every payload decoded from it
(:mod:`tether.guard.normalize`).
"""
