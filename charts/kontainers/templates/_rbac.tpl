{{- /*
The RBAC rules of each component, by scope:
  kontainers.rbac.<component>.namespaced  namespaced resources in the watched namespaces
                                          (Roles there, or a ClusterRole when watching all)
  kontainers.rbac.<component>.cluster     cluster-scoped resources (always a ClusterRole)
  kontainers.rbac.<component>.own         the release namespace only (a Role)
Each rule says why it is needed. No wildcards, no escalate/bind/impersonate, no nodes.
*/}}

{{- define "kontainers.rbac.operator.namespaced" }}
# Reconcile Containers: kopf watches them, patches its progress annotations, the id label and
# finalizer-free metadata; the retention timer deletes expired Containers.
- apiGroups: [kontainers.dev]
  resources: [containers]
  verbs: [get, list, watch, patch, delete]
# status (id, status, podIP, lastActiveAt, conditions) is a subresource.
- apiGroups: [kontainers.dev]
  resources: [containers/status]
  verbs: [get, patch]
# The sandbox pod of each Container: created, watched to follow its phase and IP, deleted on expiry.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete]
# The per-container sidecar-token Secret: created, read back when adopting, deleted on expiry.
# No list/watch: the operator never enumerates Secrets.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, delete]
# The per-container NetworkPolicy: created, read back when adopting, deleted on expiry.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, delete]
# Events on Containers (created, ready, expired, failed), posted by kopf.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if include "kontainers.namespaced" . }}
# kopf peering of namespaced operators: one KopfPeering per watched namespace, keep-alives in
# its status, watched to pause while another replica is active.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}

{{- define "kontainers.rbac.operator.cluster" }}
# kopf discovers the Container resource and notices CRD changes at runtime (read-only).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if not (include "kontainers.namespaced" .) }}
# kopf peering of a cluster-wide operator: keep-alives in this release's ClusterKopfPeering,
# watched to pause while another replica is active.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  resourceNames: [{{ include "kontainers.peeringName" . }}]
  verbs: [get, patch]
{{- end }}
{{- end }}

{{- define "kontainers.rbac.operator.own" }}
{{- end }}

{{- define "kontainers.rbac.gateway.namespaced" }}
# The API's containers: the watch cache (list, watch), create, delete, and the debounced
# last-active-at annotation (patch).
- apiGroups: [kontainers.dev]
  resources: [containers]
  verbs: [get, list, watch, create, patch, delete]
# The sidecar token of a container (get by name) and the domain-secrets Secret the gateway
# writes before the Container and then hands to it (create, patch for the ownerReference).
# No list/watch: the gateway never enumerates Secrets.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch]
{{- end }}

{{- define "kontainers.rbac.gateway.cluster" }}
{{- end }}

{{- define "kontainers.rbac.gateway.own" }}
# The hashed API keys, watched for changes; only this one Secret of the release namespace.
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
{{- end }}
