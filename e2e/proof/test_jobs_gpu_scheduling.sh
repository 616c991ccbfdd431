#!/usr/bin/env bash
# (2) kube-controller-manager turns Jobs into pods, kube-scheduler binds GPU pods to fake GPU
# nodes with room (and honours the GPU taint), a pod asking for more GPUs than any node has stays
# Pending with the scheduler's reason, and pods complete: through e2e/finish-pod (exit code and
# termination message, as a real container) and through the auto-complete label.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
new_namespace proof-jobs
finish_pod="$E2E_DIR/finish-pod"
gpus_per_node="${GRADIENTS_E2E_GPUS_PER_NODE:-8}"
gpu_product="${GRADIENTS_E2E_GPU_PRODUCT:-NVIDIA-H100-80GB-HBM3}"

gpu_job() { # name gpus completions [extra pod labels as YAML flow map]
  local labels="${4:-}"
  [[ -n "$labels" ]] || labels='{}'
  cat <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: $1}
spec:
  completions: $3
  parallelism: $3
  backoffLimit: 0
  template:
    metadata:
      labels: $labels
    spec:
      restartPolicy: Never
      tolerations:
      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
      containers:
      - name: evaluator
        image: gradients.io/e2e/evaluator:fake
        resources:
          limits: {nvidia.com/gpu: "$2", cpu: "4", memory: 16Gi}
YAML
}

pods_of() { kubectl -n "$NS" get pods -l "batch.kubernetes.io/job-name=$1" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'; }
count_pods_of() { [[ "$(pods_of "$1" | grep -c .)" -ge "$2" ]]; }

# --- a Job whose pods ask for 2 GPUs: created by the job controller, bound by the scheduler ----
apply_yaml "$(gpu_job train 2 2)" >/dev/null
wait_until 60 "job controller creates 2 pods for job/train" count_pods_of train 2
mapfile -t train_pods < <(pods_of train)
for p in "${train_pods[@]}"; do
  kubectl -n "$NS" wait --for=condition=PodScheduled "pod/$p" --timeout=60s >/dev/null
  node="$(jp "pod/$p" '{.spec.nodeName}')"
  assert_match "$node" '^gpu-node-[0-9]+$' "node of $p"
  assert_eq "$gpus_per_node" "$(kubectl get node "$node" -o jsonpath='{.status.allocatable.nvidia\.com/gpu}')" "GPUs on $node"
  assert_eq "$gpu_product" "$(kubectl get node "$node" -o jsonpath='{.metadata.labels.nvidia\.com/gpu\.product}')" "GPU product of $node"
  kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Running "pod/$p" --timeout=60s >/dev/null
  info "pod $p (2 GPUs) bound by the scheduler to $node and Running"
done

# --- the test plays the evaluator container: exit code + termination message -----------------
result='{"task":"t-1","loss":0.4213,"ok":true}'
"$finish_pod" "$NS" "${train_pods[0]}" --exit-code 0 --message "$result" >/dev/null
assert_eq "Succeeded" "$(jp "pod/${train_pods[0]}" '{.status.phase}')" "phase after exit 0"
assert_eq "0" "$(jp "pod/${train_pods[0]}" '{.status.containerStatuses[0].state.terminated.exitCode}')" "exitCode"
assert_eq "Completed" "$(jp "pod/${train_pods[0]}" '{.status.containerStatuses[0].state.terminated.reason}')" "reason"
assert_eq "$result" "$(jp "pod/${train_pods[0]}" '{.status.containerStatuses[0].state.terminated.message}')" "termination message"
"$finish_pod" "$NS" "${train_pods[1]}" --exit-code 0 --message "$result" >/dev/null
kubectl -n "$NS" wait --for=condition=Complete job/train --timeout=60s >/dev/null
assert_eq "2" "$(jp job/train '{.status.succeeded}')" "job/train succeeded pods"
info "job/train Complete after finish-pod (exit 0, termination message read back)"
# KWOK must not touch a terminated pod: a status change of it would show up as a new state.
kubectl -n "$NS" label pod "${train_pods[0]}" touched=yes >/dev/null
expect_failure kubectl -n "$NS" wait --for=jsonpath='{.status.phase}'=Running "pod/${train_pods[0]}" --timeout=3s
assert_eq "$result" "$(jp "pod/${train_pods[0]}" '{.status.containerStatuses[0].state.terminated.message}')" "termination message after a later event"

# --- a failing container: exit code 3 fails the pod and the Job (backoffLimit 0) --------------
apply_yaml "$(gpu_job crash 1 1)" >/dev/null
wait_until 60 "pod of job/crash" count_pods_of crash 1
crash_pod="$(pods_of crash | head -1)"
printf 'CUDA error: out of memory\nTraceback ...' > "${TMPDIR:-/tmp}/proof-msg-$$"
"$finish_pod" "$NS" "$crash_pod" --exit-code 3 --message-file "${TMPDIR:-/tmp}/proof-msg-$$" >/dev/null
rm -f "${TMPDIR:-/tmp}/proof-msg-$$"
assert_eq "Failed" "$(jp "pod/$crash_pod" '{.status.phase}')" "phase after exit 3"
assert_eq "3" "$(jp "pod/$crash_pod" '{.status.containerStatuses[0].state.terminated.exitCode}')" "exitCode"
assert_eq "Error" "$(jp "pod/$crash_pod" '{.status.containerStatuses[0].state.terminated.reason}')" "reason"
assert_contains "$(jp "pod/$crash_pod" '{.status.containerStatuses[0].state.terminated.message}')" "CUDA error: out of memory" "termination message"
kubectl -n "$NS" wait --for=condition=Failed job/crash --timeout=60s >/dev/null
info "job/crash Failed after finish-pod --exit-code 3"

# --- auto-complete path: pods labelled gradients.io/e2e-autocomplete=true exit 0 by themselves -
apply_yaml "$(gpu_job auto 1 3 '{gradients.io/e2e-autocomplete: "true"}')" >/dev/null
kubectl -n "$NS" wait --for=condition=Complete job/auto --timeout=90s >/dev/null
assert_eq "3" "$(jp job/auto '{.status.succeeded}')" "job/auto succeeded pods"
for p in $(pods_of auto); do
  assert_eq "0" "$(jp "pod/$p" '{.status.containerStatuses[0].state.terminated.exitCode}')" "exitCode of $p"
  assert_match "$(jp "pod/$p" '{.spec.nodeName}')" '^gpu-node-[0-9]+$' "node of $p"
done
info "job/auto Complete through the auto-complete stage"

# --- more GPUs than any node has: stays Pending with the scheduler's reason ---------------------
apply_yaml "apiVersion: v1
kind: Pod
metadata: {name: too-big}
spec:
  restartPolicy: Never
  tolerations:
  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
  containers:
  - name: c
    image: gradients.io/e2e/evaluator:fake
    resources:
      limits: {nvidia.com/gpu: \"$((gpus_per_node + 1))\"}" >/dev/null
kubectl -n "$NS" wait --for=condition=PodScheduled=false pod/too-big --timeout=60s >/dev/null
assert_eq "Unschedulable" "$(jp pod/too-big '{.status.conditions[?(@.type=="PodScheduled")].reason}')" "PodScheduled reason"
msg="$(jp pod/too-big '{.status.conditions[?(@.type=="PodScheduled")].message}')"
assert_contains "$msg" "Insufficient nvidia.com/gpu" "PodScheduled message"
assert_eq "Pending" "$(jp pod/too-big '{.status.phase}')" "phase of too-big"
assert_eq "" "$(jp pod/too-big '{.spec.nodeName}')" "nodeName of too-big"
wait_until 30 "FailedScheduling event for too-big" bash -c \
  "kubectl -n '$NS' get events --field-selector involvedObject.name=too-big,reason=FailedScheduling -o name | grep -q ."
info "$((gpus_per_node + 1))-GPU pod Pending: $msg"

# --- no toleration: the GPU taint keeps the pod off the GPU nodes -------------------------------
apply_yaml "apiVersion: v1
kind: Pod
metadata: {name: no-toleration}
spec:
  containers:
  - name: c
    image: gradients.io/e2e/evaluator:fake
    resources:
      limits: {nvidia.com/gpu: \"1\"}" >/dev/null
kubectl -n "$NS" wait --for=condition=PodScheduled=false pod/no-toleration --timeout=60s >/dev/null
assert_contains "$(jp pod/no-toleration '{.status.conditions[?(@.type=="PodScheduled")].message}')" "untolerated taint" "PodScheduled message"
info "pod without the GPU toleration is not scheduled"
