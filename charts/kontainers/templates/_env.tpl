{{- /*
The environment of each process: pydantic-settings fields (KONTAINERS_<KIND>_<FIELD>), list and
dict values as JSON. Kept next to each other so a settings rename is one place to follow.
*/}}

{{- define "kontainers.operatorEnv" -}}
# kopf's peering identity: the pod name, so `kubectl get clusterkopfpeerings -o yaml` names pods.
- name: POD_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: KONTAINERS_OPERATOR_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: KONTAINERS_OPERATOR_WATCH_NAMESPACES
  value: {{ include "kontainers.watchNamespacesJson" . | quote }}
- name: KONTAINERS_OPERATOR_PEERING_NAME
  value: {{ include "kontainers.peeringName" . }}
- name: KONTAINERS_OPERATOR_SIDECAR_IMAGE
  value: {{ include "kontainers.image" . }}
- name: KONTAINERS_OPERATOR_SANDBOX_IMAGE
  value: {{ .Values.sandbox.image }}
- name: KONTAINERS_OPERATOR_RUNTIME_CLASS_NAME
  value: {{ .Values.sandbox.runtimeClassName | quote }}
- name: KONTAINERS_OPERATOR_SIDECAR_PORT
  value: {{ .Values.sandbox.sidecarPort | quote }}
- name: KONTAINERS_OPERATOR_DATA_SIZE_LIMIT
  value: {{ .Values.sandbox.dataSizeLimit | quote }}
- name: KONTAINERS_OPERATOR_SIZES
  value: {{ toJson .Values.sandbox.sizes | quote }}
- name: KONTAINERS_OPERATOR_EXPIRY_CHECK_INTERVAL_SECONDS
  value: {{ .Values.expiry.checkIntervalSeconds | quote }}
- name: KONTAINERS_OPERATOR_RETENTION_SECONDS
  value: {{ .Values.expiry.retentionSeconds | quote }}
- name: KONTAINERS_OPERATOR_GATEWAY_SELECTOR
  value: {{ include "kontainers.gatewaySelectorJson" . | quote }}
- name: KONTAINERS_OPERATOR_EGRESS_SELECTOR
  value: {{ include "kontainers.egressSelectorJson" . | quote }}
- name: KONTAINERS_OPERATOR_EGRESS_PORT
  value: {{ .Values.egress.port | quote }}
- name: KONTAINERS_OPERATOR_METRICS_PORT
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
- name: KONTAINERS_EGRESS_PORT
  value: {{ .Values.egress.port | quote }}
- name: KONTAINERS_EGRESS_OPS_PORT
  value: {{ .Values.egress.opsPort | quote }}
- name: KONTAINERS_EGRESS_LOG_LEVEL
  value: {{ .Values.logLevel }}
{{- end }}
