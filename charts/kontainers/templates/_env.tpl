{{- /*
The environment of each process: pydantic-settings fields (KONTAINERS_<KIND>_<FIELD>), list and
dict values as JSON. Kept next to each other so a settings rename is one place to follow.
*/}}

{{- define "kontainers.operatorEnv" -}}
{{- $sizes := .Values.sandbox.sizes }}
{{- $memoryRequests := dict }}
{{- $cpuRequests := dict }}
{{- $cpuLimits := dict }}
{{- range $size, $spec := $sizes }}
{{- $_ := set $memoryRequests $size (toString $spec.memoryRequest) }}
{{- $_ := set $cpuRequests $size (toString $spec.cpuRequest) }}
{{- $_ := set $cpuLimits $size (toString $spec.cpuLimit) }}
{{- end }}
# kopf's peering identity: the pod name, so the peering object names the active pod.
- name: POD_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: KONTAINERS_OPERATOR_NAMESPACES
  value: {{ include "kontainers.watchNamespacesJson" . | quote }}
- name: KONTAINERS_OPERATOR_SANDBOX_IMAGE
  value: {{ .Values.sandbox.image | quote }}
- name: KONTAINERS_OPERATOR_SIDECAR_IMAGE
  value: {{ include "kontainers.image" . | quote }}
- name: KONTAINERS_OPERATOR_IMAGE_PULL_POLICY
  value: {{ .Values.image.pullPolicy }}
- name: KONTAINERS_OPERATOR_IMAGE_PULL_SECRETS
  value: {{ toJson .Values.sandbox.imagePullSecrets | quote }}
{{- with .Values.sandbox.runtimeClassName }}
- name: KONTAINERS_OPERATOR_RUNTIME_CLASS_NAME
  value: {{ . | quote }}
{{- end }}
{{- with .Values.sandbox.nodeSelector }}
- name: KONTAINERS_OPERATOR_SANDBOX_NODE_SELECTOR
  value: {{ toJson . | quote }}
{{- end }}
{{- with .Values.sandbox.tolerations }}
- name: KONTAINERS_OPERATOR_SANDBOX_TOLERATIONS
  value: {{ toJson . | quote }}
{{- end }}
- name: KONTAINERS_OPERATOR_MEMORY_REQUESTS
  value: {{ toJson $memoryRequests | quote }}
- name: KONTAINERS_OPERATOR_CPU_REQUESTS
  value: {{ toJson $cpuRequests | quote }}
- name: KONTAINERS_OPERATOR_CPU_LIMITS
  value: {{ toJson $cpuLimits | quote }}
- name: KONTAINERS_OPERATOR_SIDECAR_PORT
  value: {{ .Values.sandbox.sidecarPort | quote }}
- name: KONTAINERS_OPERATOR_SIDECAR_REQUESTS
  value: {{ toJson .Values.sandbox.sidecarResources.requests | quote }}
- name: KONTAINERS_OPERATOR_SIDECAR_LIMITS
  value: {{ toJson .Values.sandbox.sidecarResources.limits | quote }}
- name: KONTAINERS_OPERATOR_DATA_SIZE_LIMIT
  value: {{ .Values.sandbox.dataSizeLimit | quote }}
- name: KONTAINERS_OPERATOR_WARM_POOL
  value: {{ toJson (.Values.sandbox.warmPool | default dict) | quote }}
- name: KONTAINERS_OPERATOR_WARM_POOL_NAMESPACES
  value: {{ toJson (.Values.sandbox.warmPoolNamespaces | default list) | quote }}
- name: KONTAINERS_OPERATOR_GATEWAY_POD_LABELS
  value: {{ include "kontainers.gatewaySelectorJson" . | quote }}
- name: KONTAINERS_OPERATOR_GATEWAY_NAMESPACE
  value: {{ .Release.Namespace }}
- name: KONTAINERS_OPERATOR_EGRESS_POD_LABELS
  value: {{ include "kontainers.egressSelectorJson" . | quote }}
- name: KONTAINERS_OPERATOR_EGRESS_NAMESPACE
  value: {{ .Release.Namespace }}
- name: KONTAINERS_OPERATOR_EGRESS_PORT
  value: {{ .Values.egress.port | quote }}
- name: KONTAINERS_OPERATOR_EGRESS_MODE
  value: {{ .Values.egress.mode }}
- name: KONTAINERS_OPERATOR_EXPIRY_CHECK_INTERVAL
  value: {{ .Values.expiry.checkIntervalSeconds | quote }}
- name: KONTAINERS_OPERATOR_EXPIRED_RETENTION
  value: {{ .Values.expiry.retentionSeconds | quote }}
- name: KONTAINERS_OPERATOR_PEERING_NAME
  value: {{ include "kontainers.peeringName" . }}
{{- if gt (int .Values.operator.replicas) 1 }}
# Several replicas must see each other: refuse to start without the peering CRDs.
- name: KONTAINERS_OPERATOR_PEERING_MANDATORY
  value: "true"
{{- end }}
- name: KONTAINERS_OPERATOR_OPS_HOST
  value: 0.0.0.0
- name: KONTAINERS_OPERATOR_OPS_PORT
  value: {{ .Values.operator.port | quote }}
- name: KONTAINERS_OPERATOR_LOG_LEVEL
  value: {{ .Values.logLevel }}
{{- end }}

{{- define "kontainers.egressEnv" -}}
- name: KONTAINERS_EGRESS_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: KONTAINERS_EGRESS_WATCH_NAMESPACES
  value: {{ include "kontainers.watchNamespacesJson" . | quote }}
- name: KONTAINERS_EGRESS_HOST
  value: 0.0.0.0
- name: KONTAINERS_EGRESS_CA_SECRET
  value: {{ include "kontainers.egressCaName" . }}
# Published for the operator, which gives sandboxes the Service's address (no DNS needed).
- name: KONTAINERS_EGRESS_ADVERTISE_URL
  value: {{ printf "http://%s.%s.svc:%v" (include "kontainers.componentName" (dict "root" . "component" "egress")) .Release.Namespace .Values.egress.port | quote }}
- name: KONTAINERS_EGRESS_PORT
  value: {{ .Values.egress.port | quote }}
- name: KONTAINERS_EGRESS_OPS_PORT
  value: {{ .Values.egress.opsPort | quote }}
- name: KONTAINERS_EGRESS_ALLOWED_PORTS
  value: {{ toJson .Values.egress.allowedPorts | quote }}
- name: KONTAINERS_EGRESS_LOG_LEVEL
  value: {{ .Values.logLevel }}
{{- end }}

{{- define "kontainers.filesRoot" -}}
/var/lib/kontainers/files
{{- end }}

{{- define "kontainers.filesClaimName" -}}
{{- default (include "kontainers.componentName" (dict "root" . "component" "files")) .Values.files.persistence.existingClaim }}
{{- end }}

{{- define "kontainers.filesEnv" -}}
{{- $files := .Values.files }}
- name: KONTAINERS_FILES_BACKEND
  value: {{ $files.backend }}
- name: KONTAINERS_FILES_MAX_UPLOAD_BYTES
  value: {{ $files.maxUploadBytes | int64 | quote }}
{{- if eq $files.backend "filesystem" }}
- name: KONTAINERS_FILES_ROOT
  value: {{ include "kontainers.filesRoot" . }}
{{- else }}
{{- with $files.s3.endpointUrl }}
- name: KONTAINERS_FILES_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: KONTAINERS_FILES_S3_BUCKET
  value: {{ $files.s3.bucket | quote }}
- name: KONTAINERS_FILES_S3_PREFIX
  value: {{ $files.s3.prefix | quote }}
- name: KONTAINERS_FILES_S3_REGION
  value: {{ $files.s3.region | quote }}
{{- with $files.s3.existingSecret }}
- name: KONTAINERS_FILES_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: access-key-id
- name: KONTAINERS_FILES_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: secret-access-key
{{- end }}
{{- end }}
{{- end }}
