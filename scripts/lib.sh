# Shared by the project's scripts: one cache root outside the clone, keyed inside by versions.
export GRADIENTS_CACHE="${GRADIENTS_CACHE:-$HOME/.cache/gradients}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GRADIENTS_CACHE/target}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
