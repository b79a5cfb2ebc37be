{{- /*
The RBAC rules of each component, by scope:
  kontainers.rbac.<component>.namespaced  namespaced resources in the watched namespaces
                                          (Roles there, or a ClusterRole when watching all)
  kontainers.rbac.<component>.cluster     cluster-scoped resources (always a ClusterRole)
  kontainers.rbac.<component>.own         the release namespace only (a Role)
Each rule says why it is needed. No wildcards; nothing on nodes, RBAC objects or impersonation;
Secrets are never listable, except the API-keys Secret by name.
*/}}

{{- define "kontainers.egressCaName" -}}
kontainers-egress-ca
{{- end }}

{{- define "kontainers.rbac.operator.namespaced" }}
# Reconcile Containers: kopf lists and watches them, patches its progress annotations and the
# kontainers.dev/id label; the expiry sweep deletes expired Containers after the retention.
- apiGroups: [kontainers.dev]
  resources: [containers]
  verbs: [get, list, watch, patch, delete]
# status (id, status, podIP, lastActiveAt, conditions) is a subresource.
- apiGroups: [kontainers.dev]
  resources: [containers/status]
  verbs: [patch]
# The sandbox pod of each Container: created, watched (label-selected) to follow its phase and IP,
# read back when adopting after a restart, deleted on expiry or when it must be replaced; warm-pool
# pods are patched when a Container claims one (labels and ownerReference).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch, delete]
# The per-container sidecar-token Secret: created, read back when adopting, deleted on expiry.
# No list/watch: the operator never enumerates Secrets (a warm-pool pod's own Secret is created
# owned by its pod, so it never outlives it).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, delete]
# The per-container NetworkPolicy: created, read back and corrected when adopting, deleted on expiry;
# watched (label-selected) so that one deleted or edited behind the operator's back is restored.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
{{- if eq .Values.egress.mode "cilium" }}
# Cilium mode: the per-container CiliumNetworkPolicy (toFQDNs) of allowlist containers, created
# and corrected when adopting (patch); owned by the Container, so garbage collection deletes it.
- apiGroups: [cilium.io]
  resources: [ciliumnetworkpolicies]
  verbs: [get, create, patch]
{{- else }}
# The per-container copy of the egress proxy's CA certificate (allowlist containers): a pod can
# only mount ConfigMaps of its own namespace. Updated when the CA rotates; garbage-collected.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
{{- end }}
# Events on Containers (created, ready, expired, failed).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if include "kontainers.namespaced" . }}
# kopf peering of a namespaced operator: a KopfPeering in each watched namespace (created by the
# operator at start), keep-alives in its status, watched to pause while another replica is active.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, create, patch]
{{- end }}
{{- end }}

{{- define "kontainers.rbac.operator.cluster" }}
# kopf notices CRD changes at runtime (read-only).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if include "kontainers.namespaced" . }}
# kopf resolves its watched namespaces (names only).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- else }}
# kopf peering of a cluster-wide operator: this release's ClusterKopfPeering (created by the
# operator at start), keep-alives in its status, watched to pause while another replica is active.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, watch, create]
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  resourceNames: [{{ include "kontainers.peeringName" . }}]
  verbs: [get, patch]
{{- end }}
{{- end }}

{{- define "kontainers.rbac.operator.own" }}
{{- if eq .Values.egress.mode "proxy" }}
# What the egress proxy publishes (its CA certificate and address), copied next to each
# allowlist sandbox; only that ConfigMap of the release namespace.
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ include "kontainers.egressCaName" . }}]
  verbs: [get]
{{- end }}
{{- end }}

{{- define "kontainers.rbac.gateway.namespaced" }}
# The API's containers: the watch cache (list, watch), create, retrieve, delete, and the debounced
# last-active-at annotation (patch).
- apiGroups: [kontainers.dev]
  resources: [containers]
  verbs: [get, list, watch, create, patch, delete]
# The sidecar token of a container (get by name) and the domain-secrets Secret the gateway
# writes before the Container (create, update on a retried create, patch for the ownerReference,
# delete when the create fails). No list/watch: the gateway never enumerates Secrets.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, update, patch, delete]
# POST /v1/containers/{id}/exec runs commands in the sandbox container through pods/exec (a
# websocket): create (API servers >= 1.35 authorize the upgrade as create), get (older ones).
# Nothing on pods themselves, attach or port-forward.
- apiGroups: [""]
  resources: [pods/exec]
  verbs: [get, create]
{{- end }}

{{- define "kontainers.rbac.gateway.cluster" }}
{{- end }}

{{- define "kontainers.rbac.gateway.own" }}
# The hashed API keys, listed and watched by name; no other Secret of the release namespace.
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ include "kontainers.apiKeysSecretName" . }}]
  verbs: [get, list, watch]
{{- end }}

{{- define "kontainers.rbac.egress.namespaced" }}
# Which container a connection comes from: the allowlist and pod IP of every Container.
- apiGroups: [kontainers.dev]
  resources: [containers]
  verbs: [get, list, watch]
# The values of domain secrets, read by name when a request to their domain needs them.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}

{{- define "kontainers.rbac.egress.cluster" }}
{{- end }}

{{- define "kontainers.rbac.egress.own" }}
# The per-install CA: the first replica creates the Secret (create cannot be limited to a name),
# every replica reads it.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ include "kontainers.egressCaName" . }}]
  verbs: [get]
# Its public certificate and the proxy's address, published for the operator.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [{{ include "kontainers.egressCaName" . }}]
  verbs: [get, update]
{{- end }}
