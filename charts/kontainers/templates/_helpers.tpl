{{/*
Every helper is prefixed with the chart name so a parent chart can include this one without
collisions; every generated name is truncated to 63 characters (the DNS-1123 label limit).
*/}}

{{- define "kontainers.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release-scoped base name: the release name alone when it already contains the chart name. */}}
{{- define "kontainers.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The name of one component's objects: (dict "root" $ "component" "gateway"). */}}
{{- define "kontainers.componentName" -}}
{{- $base := include "kontainers.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .component }}
{{- end }}

{{- define "kontainers.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "kontainers.labels" -}}
helm.sh/chart: {{ include "kontainers.chart" . }}
app.kubernetes.io/name: {{ include "kontainers.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kontainers
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels of one component (stable across upgrades: never add the version here).
The pods do not carry `app.kubernetes.io/managed-by`: on pods it means "a sandbox pod made by the
operator" (`managed-by=kontainers`), which the gateway and egress pods are not.
*/}}
{{- define "kontainers.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kontainers.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kontainers.componentLabels" -}}
{{ include "kontainers.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image every process kind runs: repository[:tag][@digest], tag defaulting to appVersion. */}}
{{- define "kontainers.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "kontainers.serviceAccountName" -}}
{{- include "kontainers.componentName" . }}
{{- end }}

{{/* The Secret holding the gateway's hashed API keys. */}}
{{- define "kontainers.apiKeysSecretName" -}}
{{- default "kontainers-api-keys" .Values.gateway.apiKeys.existingSecret }}
{{- end }}

{{/* "true" when the release serves only .Values.watchNamespaces (namespaced RBAC), else "". */}}
{{- define "kontainers.namespaced" -}}
{{- if .Values.watchNamespaces }}true{{- end }}
{{- end }}

{{/* The kopf peering object's name (one per release, so two releases never pause each other). */}}
{{- define "kontainers.peeringName" -}}
{{- include "kontainers.fullname" . }}
{{- end }}

{{/* JSON list of the watched namespaces, for the pydantic-settings list fields. */}}
{{- define "kontainers.watchNamespacesJson" -}}
{{- toJson (default (list) .Values.watchNamespaces) }}
{{- end }}

{{/* Labels the gateway pods carry, as JSON: the operator lets them reach the sidecar port. */}}
{{- define "kontainers.gatewaySelectorJson" -}}
{{- include "kontainers.selectorLabels" (dict "root" . "component" "gateway") | fromYaml | toJson }}
{{- end }}

{{/*
"true" when this release runs the egress proxy (egress.mode `proxy` and egress.enabled), else "".
In `cilium` mode the CNI enforces allowlists and nothing talks to a proxy.
*/}}
{{- define "kontainers.egressProxy" -}}
{{- if and (eq .Values.egress.mode "proxy") .Values.egress.enabled }}true{{- end }}
{{- end }}

{{/* Labels of the egress proxy pods, as JSON (or egress.podSelector for an external proxy). */}}
{{- define "kontainers.egressSelectorJson" -}}
{{- if .Values.egress.podSelector }}
{{- toJson .Values.egress.podSelector }}
{{- else }}
{{- include "kontainers.selectorLabels" (dict "root" . "component" "egress") | fromYaml | toJson }}
{{- end }}
{{- end }}

{{/*
The pod-level fields shared by every Deployment: (dict "root" $ "values" .Values.gateway).
*/}}
{{- define "kontainers.podScheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Probes wired to the process's /healthz (liveness) and /readyz (readiness) on port `http`. */}}
{{- define "kontainers.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  {{- toYaml .values.livenessProbe | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  {{- toYaml .values.readinessProbe | nindent 2 }}
{{- end }}
