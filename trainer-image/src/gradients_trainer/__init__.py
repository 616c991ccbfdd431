"""Gradients reference trainer and trusted evaluator (see trainer-image/README.md)."""

__version__ = "0.1.0"
