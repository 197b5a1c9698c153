"""tether: make a language model safe and prove it."""

__version__ = "0.1.0"
