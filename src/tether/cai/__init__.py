"""Constitutional AI (Bai et al. 2022, "Constitutional AI: Harmlessness from AI Feedback").

- :mod:`tether.cai.constitution`: constitutions as YAML files (``command: constitution``): principles, each with
  a critique request, a revision request and a preference question; the team's default ships in ``data/``.
- :mod:`tether.cai.prompts`: the prompt files `tether cai revise` reads, checked before any model loads.
- :mod:`tether.cai.revise`: critique and revise, round by round, keeping the whole chain.
- :mod:`tether.cai.usable`: the check that throws out unusable critiques and revisions.
- :mod:`tether.cai.run`: `tether cai revise`: run folder, resume, chains.jsonl, SFT and preference outputs.
- :mod:`tether.cai.label`: AI preference labels: a judge asked in both orders, read from option log-probabilities.
- :mod:`tether.cai.label_run`: `tether cai label`: run folder, resume, labels.jsonl, soft-labelled preferences.
"""
