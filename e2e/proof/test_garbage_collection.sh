#!/usr/bin/env bash
# (3) The garbage collector (kube-controller-manager) deletes owned objects when their owner is
# deleted: a ConfigMap owning a Secret and a ConfigMap (background propagation), and a Job owning
# its pods (foreground propagation: the Job is held by the foregroundDeletion finalizer until its
# pods are gone; KWOK's pod-delete stage plays the kubelet's final delete).
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
new_namespace proof-gc

kubectl -n "$NS" create configmap owner --from-literal=role=owner >/dev/null
uid="$(jp configmap/owner '{.metadata.uid}')"
owner_ref="ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: owner, uid: $uid}]"
apply_yaml "apiVersion: v1
kind: Secret
metadata: {name: owned-secret, $owner_ref}
stringData: {token: abc}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: owned-config, $owner_ref}
data: {k: v}" >/dev/null
assert_eq "owner" "$(jp secret/owned-secret '{.metadata.ownerReferences[0].name}')" "owner of owned-secret"

kubectl -n "$NS" delete configmap owner --cascade=background >/dev/null
kubectl -n "$NS" wait --for=delete secret/owned-secret configmap/owned-config --timeout=60s >/dev/null
expect_failure kubectl -n "$NS" get secret owned-secret
info "owned Secret and ConfigMap garbage-collected after the owner was deleted"

# A Job and its (Running) pods, foreground deletion.
apply_yaml "apiVersion: batch/v1
kind: Job
metadata: {name: gc-job}
spec:
  completions: 2
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      containers:
      - {name: c, image: gradients.io/e2e/worker:fake, resources: {limits: {nvidia.com/gpu: \"1\"}}}" >/dev/null
running_pods() { [[ "$(kubectl -n "$NS" get pods -l batch.kubernetes.io/job-name=gc-job --field-selector=status.phase=Running -o name | grep -c .)" -eq 2 ]]; }
wait_until 90 "2 Running pods of job/gc-job" running_pods
pods="$(kubectl -n "$NS" get pods -l batch.kubernetes.io/job-name=gc-job -o name)"
assert_eq "Job" "$(kubectl -n "$NS" get "${pods%%$'\n'*}" -o jsonpath='{.metadata.ownerReferences[0].kind}')" "pod owner kind"
kubectl -n "$NS" delete job gc-job --cascade=foreground --wait=false >/dev/null
# shellcheck disable=SC2086
kubectl -n "$NS" wait --for=delete $pods job/gc-job --timeout=90s >/dev/null
info "job/gc-job and its pods deleted (foreground cascade)"
