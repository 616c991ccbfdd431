"""Gradients reference trainer and trusted evaluator (see trainer-image/README.md)."""

__version__ = "0.1.0"

# The workload contract this package implements (arguments, outputs, result JSON); the Rust
# runner refuses a package of another version (`TRAINER_CONTRACT_VERSION`).
CONTRACT_VERSION = 1
