#!/usr/bin/env bash
# e2e/finish-pod behaves like a kubelet: per-container termination in a multi-container pod,
# phase from all exit codes, 4096-byte termination message limit, restarts under OnFailure.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
new_namespace proof-finish
finish_pod="$E2E_DIR/finish-pod"

apply_yaml "apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  restartPolicy: Never
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers:
  - {name: main, image: gradients.io/e2e/main:fake}
  - {name: sidecar, image: gradients.io/e2e/sidecar:fake}
---
apiVersion: v1
kind: Pod
metadata: {name: retry}
spec:
  restartPolicy: OnFailure
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers:
  - {name: main, image: gradients.io/e2e/main:fake}" >/dev/null

# One of two containers exits: the pod keeps running, not Ready.
"$finish_pod" "$NS" two --container main --exit-code 0 --message ok >/dev/null
assert_eq "Running" "$(jp pod/two '{.status.phase}')" "phase with one container left"
assert_eq "False" "$(jp pod/two '{.status.conditions[?(@.type=="Ready")].status}')" "Ready"
assert_eq "ContainersNotReady" "$(jp pod/two '{.status.conditions[?(@.type=="Ready")].reason}')" "Ready reason"
assert_eq "0" "$(jp pod/two '{.status.containerStatuses[?(@.name=="main")].state.terminated.exitCode}')" "main exitCode"
assert_eq "true" "$(jp pod/two '{.status.containerStatuses[?(@.name=="sidecar")].ready}')" "sidecar still ready"
# The second exits non-zero with a 5000-byte message: Failed, message cut to 4096 bytes.
big="$(head -c 5000 /dev/zero | tr '\0' 'x')"
"$finish_pod" "$NS" two --exit-code 2 --message "$big" >/dev/null 2>&1
assert_eq "Failed" "$(jp pod/two '{.status.phase}')" "phase"
assert_eq "2" "$(jp pod/two '{.status.containerStatuses[?(@.name=="sidecar")].state.terminated.exitCode}')" "sidecar exitCode"
assert_eq "4096" "$(jp pod/two '{.status.containerStatuses[?(@.name=="sidecar")].state.terminated.message}' | wc -c | tr -d ' ')" "message length"
assert_eq "PodCompleted" "$(jp pod/two '{.status.conditions[?(@.type=="Ready")].reason}')" "Ready reason"
info "multi-container pod: per-container exit, Failed with a truncated message"

# OnFailure: a failing exit restarts the container (lastState), a zero exit completes the pod.
"$finish_pod" "$NS" retry --exit-code 1 --message "first try" >/dev/null 2>&1
assert_eq "Running" "$(jp pod/retry '{.status.phase}')" "phase after a restart"
assert_eq "1" "$(jp pod/retry '{.status.containerStatuses[0].restartCount}')" "restartCount"
assert_eq "first try" "$(jp pod/retry '{.status.containerStatuses[0].lastState.terminated.message}')" "lastState message"
"$finish_pod" "$NS" retry --exit-code 0 >/dev/null
assert_eq "Succeeded" "$(jp pod/retry '{.status.phase}')" "phase"
info "OnFailure: restart recorded in lastState, then Succeeded"

# Argument errors are reported.
expect_failure "$finish_pod" "$NS" two --exit-code 300
assert_contains "$EXPECTED_OUTPUT" "0..255" "bad exit code"
