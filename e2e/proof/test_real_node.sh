#!/usr/bin/env bash
# (6) The real node: kubelet + containerd + runc beside the KWOK nodes. A pod runs in a real
# container there: its output is read with `kubectl logs` (API server -> kubelet, with
# credentials) and its termination message and exit code come from the container itself;
# KWOK leaves the node and its pods alone; only pods that ask for the node land on it; the pod
# network reaches the API server through the kubernetes Service and has no route off the machine.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${GRADIENTS_E2E_REAL_NODE:-1}" == 1 ]] || { info "GRADIENTS_E2E_REAL_NODE=0: skipped"; exit 0; }
[[ -n "${E2E_IMAGE_PYTHON_TEST:-}" ]] || fail "E2E_IMAGE_PYTHON_TEST is not set (run through e2e/test)"
node=real-node-0
new_namespace proof-real-node

# The node is a kubelet of the pinned version on containerd, not a KWOK node.
assert_eq "True" "$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" "Ready"
assert_eq "v1.36.5" "$(kubectl get node "$node" -o jsonpath='{.status.nodeInfo.kubeletVersion}')" "kubelet version"
assert_match "$(kubectl get node "$node" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}')" '^containerd://' "runtime"
assert_eq "" "$(kubectl get node "$node" -o jsonpath='{.metadata.annotations.kwok\.x-k8s\.io/node}')" "kwok annotation"
assert_eq "true" "$(kubectl get node "$node" -o jsonpath='{.metadata.labels.gradients\.io/e2e-real-node}')" "label"
assert_eq "gradients.io/e2e-real-node=true:NoSchedule" \
  "$(kubectl get node "$node" -o jsonpath='{range .spec.taints[*]}{.key}={.value}:{.effect}{end}')" "taint"
node_ip="$(kubectl get node "$node" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')"
assert_match "$node_ip" '^10\.213\.' "node InternalIP (not loopback)"
info "node $node: kubelet v1.36.5 on containerd, InternalIP $node_ip, labelled and tainted"

pod() { # name python-code
  cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1}
spec:
  restartPolicy: Never
  nodeSelector: {gradients.io/e2e-real-node: "true"}
  tolerations: [{key: gradients.io/e2e-real-node, operator: Exists, effect: NoSchedule}]
  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: main
    image: $E2E_IMAGE_PYTHON_TEST
    imagePullPolicy: Never
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
    command: [python3, -c]
    args:
    - |
$(sed 's/^/      /' <<<"$2")
EOF
}
phase() { kubectl -n "$NS" get pod "$1" -o jsonpath='{.status.phase}'; }

# A container that prints, inspects its network, writes a termination message and exits 0.
code="$(cat <<'PY'
import os, socket
print('hello from a real container, uid', os.getuid(), flush=True)
routes = [line.split()[1] for line in open('/proc/net/route').read().splitlines()[1:]]
print('routes', routes, flush=True)
assert '00000000' not in routes, 'a default route'
address = (os.environ['KUBERNETES_SERVICE_HOST'], int(os.environ['KUBERNETES_SERVICE_PORT']))
socket.create_connection(address, timeout=5).close()
print('reached the API server through the kubernetes Service', address, flush=True)
open('/dev/termination-log', 'w').write('{"ok": true}')
PY
)"
apply_yaml "$(pod hello "$code")" >/dev/null
# KWOK would report Running at once with a fake IP; the kubelet reports what the container did.
wait_until 120 "pod hello to finish" bash -c "[[ \$(kubectl -n $NS get pod hello -o jsonpath='{.status.phase}') =~ Succeeded|Failed ]]"
logs="$(kubectl -n "$NS" logs hello)"
assert_eq "Succeeded" "$(phase hello)" "phase of hello (logs: $logs)"
assert_contains "$logs" "hello from a real container, uid 1000" "kubectl logs"
assert_contains "$logs" "reached the API server through the kubernetes Service" "kubectl logs"
assert_eq '{"ok": true}' "$(jp pod/hello '{.status.containerStatuses[0].state.terminated.message}')" "termination message"
assert_eq "0" "$(jp pod/hello '{.status.containerStatuses[0].state.terminated.exitCode}')" "exit code"
assert_match "$(jp pod/hello '{.status.containerStatuses[0].containerID}')" '^containerd://[0-9a-f]{64}$' "containerID"
assert_match "$(jp pod/hello '{.status.podIP}')" '^10\.244\.0\.' "pod IP from the CNI bridge"
assert_eq "$node" "$(jp pod/hello '{.spec.nodeName}')" "node of hello"
info "pod ran in containerd on $node: kubectl logs, termination message, exit code 0, bridge IP, no default route"

# A failing container: its own exit code and its stderr.
apply_yaml "$(pod fails "import sys; print('about to fail', file=sys.stderr); sys.exit(3)")" >/dev/null
wait_until 120 "pod fails to finish" bash -c "[[ \$(kubectl -n $NS get pod fails -o jsonpath='{.status.phase}') == Failed ]]"
assert_eq "3" "$(jp pod/fails '{.status.containerStatuses[0].state.terminated.exitCode}')" "exit code"
assert_eq "Error" "$(jp pod/fails '{.status.containerStatuses[0].state.terminated.reason}')" "reason"
assert_contains "$(kubectl -n "$NS" logs fails)" "about to fail" "kubectl logs of a failed pod"
info "a failing container: Failed, exit code 3, reason Error, its stderr in kubectl logs"

# Only pods that tolerate the taint land there: a pod that selects the node without it stays Pending.
apply_yaml "apiVersion: v1
kind: Pod
metadata: {name: untolerated}
spec:
  nodeSelector: {gradients.io/e2e-real-node: \"true\"}
  containers: [{name: main, image: $E2E_IMAGE_PYTHON_TEST, imagePullPolicy: Never}]" >/dev/null
wait_until 60 "untolerated to be unschedulable" bash -c \
  "kubectl -n $NS get pod untolerated -o jsonpath='{.status.conditions[?(@.type==\"PodScheduled\")].message}' | grep -q untolerated"
assert_eq "Pending" "$(phase untolerated)" "phase of untolerated"
info "a pod without the toleration is not scheduled on the real node"

# KWOK still fakes the GPU nodes (a pod there is Running without a container runtime) and
# never touched the real node's pods (their status came from the kubelet, checked above).
apply_yaml "apiVersion: v1
kind: Pod
metadata: {name: on-fake}
spec:
  nodeSelector: {gradients.io/e2e-fake-node: \"true\"}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers: [{name: main, image: not-pulled-anywhere:1}]" >/dev/null
wait_until 60 "on-fake to be Running" bash -c "[[ \$(kubectl -n $NS get pod on-fake -o jsonpath='{.status.phase}') == Running ]]"
assert_match "$(jp pod/on-fake '{.spec.nodeName}')" '^gpu-node-' "node of on-fake"
info "the KWOK nodes still run fake pods; KWOK manages only them"
