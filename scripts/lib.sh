# Shared by the project's scripts: one cache root outside the clone, keyed inside by versions.
export GRADIENTS_CACHE="${GRADIENTS_CACHE:-$HOME/.cache/gradients}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GRADIENTS_CACHE/target}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
# The trainer package comes from THIS checkout even when the shared venv's .pth names another
# (several clones or worktrees share one cached venv).
export PYTHONPATH="$ROOT/trainer-image/src${PYTHONPATH:+:$PYTHONPATH}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

# Every clone path builds this workspace's crates under new hashes in the shared target directory
# (about 1 GB of test binaries and libraries per path, and more in incremental state), so a
# machine whose CI clones afresh each stop fills its disk, and a real node's kubelet then taints
# itself with disk-pressure. The scripts build without incremental state (a fresh clone gains
# nothing from it), and builds of this workspace's own crates untouched for 12 hours are removed;
# the dependencies' builds are shared by every path and stay.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
prune_stale_builds() {
  local names
  names="gradients|chain_double|leaderboard|$(cd "$ROOT/tests" && ls -- *.rs | sed 's/\.rs$//' | paste -sd '|')"
  find "$CARGO_TARGET_DIR"/{debug,release}/deps -maxdepth 1 -mmin +720 -regextype posix-extended \
    -regex ".*/(lib)?($names)-[0-9a-f]{16}(\..*)?" -delete 2>/dev/null || true
  find "$CARGO_TARGET_DIR"/{debug,release}/incremental -mindepth 1 -maxdepth 1 -mmin +720 \
    -exec rm -rf -- {} + 2>/dev/null || true
}
