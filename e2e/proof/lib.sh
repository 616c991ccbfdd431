# shellcheck shell=bash
# Assertion helpers for the e2e proof tests (sourced by each e2e/proof/test_*.sh).
# Every test runs with `set -euo pipefail`: the first failed command or assertion fails it.
set -euo pipefail
E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export E2E_DIR

fail() { echo "ASSERTION FAILED: $*" >&2; exit 1; }
info() { echo "  - $*" >&2; }

assert_eq() { # expected actual what
  [[ "$1" == "$2" ]] || fail "${3:-value}: expected '$1', got '$2'"
}
assert_contains() { # haystack needle what
  [[ "$1" == *"$2"* ]] || fail "${3:-output} does not contain '$2': $1"
}
assert_not_contains() { # haystack needle what
  [[ "$1" != *"$2"* ]] || fail "${3:-output} contains '$2': $1"
}
assert_match() { # string regex what
  [[ "$1" =~ $2 ]] || fail "${3:-value} '$1' does not match /$2/"
}

# expect_failure CMD...: the command must fail; its combined output is left in $EXPECTED_OUTPUT.
expect_failure() {
  if EXPECTED_OUTPUT="$("$@" 2>&1)"; then
    fail "command unexpectedly succeeded: $* -> $EXPECTED_OUTPUT"
  fi
  export EXPECTED_OUTPUT
}

# wait_until TIMEOUT_SECONDS DESCRIPTION CMD...: polls CMD (every 0.5s) until it succeeds.
wait_until() {
  local timeout="$1" what="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout}s waiting for: $what"
    sleep 0.5
  done
}

# apply_yaml YAML: kubectl apply of a manifest given as a string, in the test namespace.
apply_yaml() { kubectl -n "$NS" apply -f - <<<"$1"; }

# jp KIND/NAME JSONPATH: kubectl get -o jsonpath in the test namespace.
jp() { kubectl -n "$NS" get "$1" -o jsonpath="$2"; }

# new_namespace PREFIX: creates a fresh namespace, exports NS, deletes it when the test exits.
new_namespace() {
  NS="$1-$(date +%s)-$RANDOM"
  export NS
  kubectl create namespace "$NS" >/dev/null
  # The ServiceAccount admission plugin needs the namespace's default ServiceAccount.
  wait_until 60 "default ServiceAccount in $NS" kubectl -n "$NS" get serviceaccount default
  trap 'kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
}
