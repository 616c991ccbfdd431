#!/usr/bin/env bash
# (1) A CRD with x-kubernetes-validations (CEL) rules: the API server rejects an object that
# breaks a rule with the rule's message, enforces a transition rule (oldSelf) on update, and
# server-side apply reports a field-manager conflict.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
new_namespace proof-cel
crd=widgets.e2e.gradients.io
trap 'kubectl delete crd "$crd" --wait=false >/dev/null 2>&1 || true; kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT

kubectl apply -f - >/dev/null <<'YAML'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.gradients.io
spec:
  group: e2e.gradients.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [minReplicas, maxReplicas, tier]
            x-kubernetes-validations:
            - rule: "self.minReplicas <= self.maxReplicas"
              message: "minReplicas must not exceed maxReplicas"
            properties:
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
              tier:
                type: string
                x-kubernetes-validations:
                - rule: "self == oldSelf"
                  message: "tier is immutable"
              owner: {type: string}
YAML
kubectl wait --for=condition=Established "crd/$crd" --timeout=60s >/dev/null
info "CRD established"

# A valid object is accepted (the discovery of the new kind may lag a moment).
good='apiVersion: e2e.gradients.io/v1
kind: Widget
metadata: {name: good}
spec: {minReplicas: 1, maxReplicas: 3, tier: gold}'
wait_until 30 "valid Widget accepted" apply_yaml "$good"
assert_eq "3" "$(jp widget/good '{.spec.maxReplicas}')" "stored maxReplicas"
info "valid object accepted"

# An object that breaks the rule is rejected with the rule's message.
expect_failure kubectl -n "$NS" apply -f - <<'YAML'
apiVersion: e2e.gradients.io/v1
kind: Widget
metadata: {name: bad}
spec: {minReplicas: 5, maxReplicas: 3, tier: gold}
YAML
assert_contains "$EXPECTED_OUTPUT" "minReplicas must not exceed maxReplicas" "rejection"
assert_contains "$EXPECTED_OUTPUT" "Invalid value" "rejection"
info "invalid object rejected: $(grep -o 'spec: Invalid value.*' <<<"$EXPECTED_OUTPUT" | head -1)"
expect_failure kubectl -n "$NS" get widget bad

# Transition rule (oldSelf): tier is immutable.
expect_failure kubectl -n "$NS" patch widget good --type=merge -p '{"spec":{"tier":"silver"}}'
assert_contains "$EXPECTED_OUTPUT" "tier is immutable" "transition rule rejection"
kubectl -n "$NS" patch widget good --type=merge -p '{"spec":{"maxReplicas":4}}' >/dev/null
info "transition rule enforced on update"

# Server-side apply: a second field manager changing an owned field gets a conflict.
kubectl -n "$NS" apply --server-side --field-manager=alice -f - >/dev/null <<'YAML'
apiVersion: e2e.gradients.io/v1
kind: Widget
metadata: {name: ssa}
spec: {minReplicas: 1, maxReplicas: 2, tier: gold, owner: alice}
YAML
expect_failure kubectl -n "$NS" apply --server-side --field-manager=bob -f - <<'YAML'
apiVersion: e2e.gradients.io/v1
kind: Widget
metadata: {name: ssa}
spec: {minReplicas: 1, maxReplicas: 2, tier: gold, owner: bob}
YAML
assert_contains "$EXPECTED_OUTPUT" "conflict" "server-side apply"
assert_eq "alice" "$(jp widget/ssa '{.spec.owner}')" "owner after conflicting apply"
info "server-side apply conflict detected"
