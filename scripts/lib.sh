# Shared by the project's scripts: one cache root outside the clone, keyed inside by versions.
export GRADIENTS_CACHE="${GRADIENTS_CACHE:-$HOME/.cache/gradients}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GRADIENTS_CACHE/target}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# The trainer package comes from THIS checkout even when the shared venv's .pth names another
# (several clones or worktrees share one cached venv).
export PYTHONPATH="$ROOT/trainer-image/src${PYTHONPATH:+:$PYTHONPATH}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
