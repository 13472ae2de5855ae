{{- define "supercheck.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "supercheck.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "supercheck.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "supercheck.secretName" -}}
{{- .Values.connections.existingSecret | default (printf "%s-connections" (include "supercheck.fullname" .)) -}}
{{- end -}}

{{/* Fair share between namespaces: .Values.fairShare as the operator's SUPERCHECK_NAMESPACE_* variables
(only those set; docs/operator.md). */}}
{{- define "supercheck.fairShareEnv" -}}
{{- $fs := .Values.fairShare | default dict -}}
{{- range $key, $name := dict "maxRunning" "SUPERCHECK_NAMESPACE_MAX_RUNNING" "maxQueued" "SUPERCHECK_NAMESPACE_MAX_QUEUED" "maxPriority" "SUPERCHECK_NAMESPACE_MAX_PRIORITY" "maxTimeoutSeconds" "SUPERCHECK_NAMESPACE_MAX_TIMEOUT_SECONDS" }}
{{- $value := index $fs $key -}}
{{- if not (kindIs "invalid" $value) }}{{- if ne (toString $value) "" }}
- name: {{ $name }}
  value: {{ toString $value | quote }}
{{- end }}{{- end }}
{{- end }}
{{- with $fs.namespaces }}
- name: SUPERCHECK_NAMESPACE_LIMITS
  value: {{ toJson . | quote }}
{{- end }}
{{- end -}}
