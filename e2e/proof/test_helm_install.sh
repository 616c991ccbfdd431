#!/usr/bin/env bash
# (4) `helm install` of a tiny chart (testdata/tiny-chart) against the cluster, waiting for its
# Deployment (deployment + replicaset controllers, scheduler, KWOK) to become ready, then
# `helm upgrade` and `helm uninstall`.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
new_namespace proof-helm
helm_home="$(mktemp -d)"
trap 'rm -rf "$helm_home"; kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
export HELM_CONFIG_HOME="$helm_home/config" HELM_CACHE_HOME="$helm_home/cache" HELM_DATA_HOME="$helm_home/data"
chart="$(dirname "${BASH_SOURCE[0]}")/testdata/tiny-chart"

helm version --short >&2
helm install tiny "$chart" -n "$NS" --wait --timeout 120s --set message=hello >/dev/null
assert_eq "deployed" "$(helm status tiny -n "$NS" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["info"]["status"])')" "helm release status"
assert_eq "hello" "$(jp configmap/tiny-tiny-chart '{.data.message}')" "rendered ConfigMap"
assert_eq "2" "$(jp deployment/tiny-tiny-chart '{.status.readyReplicas}')" "ready replicas"
for n in $(kubectl -n "$NS" get pods -l app.kubernetes.io/instance=tiny -o jsonpath='{.items[*].spec.nodeName}'); do
  assert_match "$n" '^gpu-node-[0-9]+$' "node of a chart pod"
done
info "helm install deployed, Deployment ready on the fake GPU nodes"

helm upgrade tiny "$chart" -n "$NS" --wait --timeout 120s --set message=bye >/dev/null
assert_eq "bye" "$(jp configmap/tiny-tiny-chart '{.data.message}')" "ConfigMap after upgrade"
assert_eq "2" "$(helm history tiny -n "$NS" -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" "release revisions"
helm uninstall tiny -n "$NS" --wait --timeout 120s >/dev/null
expect_failure kubectl -n "$NS" get configmap tiny-tiny-chart
info "helm upgrade and uninstall work"
