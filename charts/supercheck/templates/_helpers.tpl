{{- define "supercheck.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* As `helm create`'s: <release>-<name>, or the release's name alone when it contains the name
(release `supercheck` gives `supercheck`, not `supercheck-supercheck`); fullnameOverride wins. */ -}}
{{- define "supercheck.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "supercheck.labels" -}}
app.kubernetes.io/name: {{ include "supercheck.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "supercheck.selectorLabels" -}}
app.kubernetes.io/name: {{ include "supercheck.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- /* The operator's ServiceAccount: the chart's (serviceAccount.create) or an existing one by name. */ -}}
{{- define "supercheck.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "supercheck.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: the name of an existing ServiceAccount when serviceAccount.create=false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* The operator's image, also the helm test's (it ships the `supercheck` CLI). */ -}}
{{- define "supercheck.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- /* imagePullSecrets' names, comma-separated: the operator's RUNNER_IMAGE_PULL_SECRETS. */ -}}
{{- define "supercheck.pullSecretNames" -}}
{{- $names := list -}}
{{- range .Values.imagePullSecrets }}{{ $names = append $names .name }}{{ end -}}
{{- join "," $names -}}
{{- end -}}

{{- /* The namespace the helm test runs its TestRun in: one the operator serves (the first of
watchNamespaces in namespaced mode), else the release's. */ -}}
{{- define "supercheck.testNamespace" -}}
{{- if .Values.watchNamespaces -}}
{{- first .Values.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- /* The Redis password the chart's Secret holds when the URL has none: the one given, else the one
this release generated before (lookup), else a new one. Computed once per render (kept in a memo in
.Values) so that the Secret and the pods' checksum of it see the same one. */ -}}
{{- define "supercheck.redisPassword" -}}
{{- $memo := .Values.connections -}}
{{- if not (hasKey $memo "_renderedRedisPassword") -}}
{{- $password := .Values.connections.redisPassword -}}
{{- if not $password -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "supercheck.secretName" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data "REDIS_PASSWORD") -}}
{{- $password = index $existing.data "REDIS_PASSWORD" | b64dec -}}
{{- else -}}
{{- $password = randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- $_ := set $memo "_renderedRedisPassword" $password -}}
{{- end -}}
{{- index $memo "_renderedRedisPassword" -}}
{{- end -}}

{{- define "supercheck.secretName" -}}
{{- .Values.connections.existingSecret | default (printf "%s-connections" (include "supercheck.fullname" .)) -}}
{{- end -}}

{{- /*
The operator's rules on namespaced resources: in its ClusterRole (cluster-wide) or in a Role in
each of watchNamespaces. Each verb is one the code uses (docs/security.md, "RBAC").
*/ -}}
{{- define "supercheck.runRules" -}}
# The runs: Kopf lists, watches and patches them (finalizer, its annotations); the operator reads
# one afresh and deletes a finished run whose ttlSecondsAfterFinished passed.
- apiGroups: [supercheck.io]
  resources: [testruns, jobruns]
  verbs: [get, list, watch, patch, delete]
# Their status: written with a resourceVersion precondition (merge patch).
- apiGroups: [supercheck.io]
  resources: [testruns/status, jobruns/status]
  verbs: [patch]
# RunSchedules and Monitors start runs: a schedule's at each due time, a synthetic monitor's at each
# check (named after the time, so a second create of one time is refused, never doubled).
- apiGroups: [supercheck.io]
  resources: [testruns, jobruns]
  verbs: [create]
# RunSchedules and Monitors: Kopf lists, watches and patches them; the operator writes their status
# and reads a schedule afresh before each due time (its status decides what is due).
- apiGroups: [supercheck.io]
  resources: [runschedules]
  verbs: [get, list, watch, patch]
- apiGroups: [supercheck.io]
  resources: [monitors]
  verbs: [list, watch, patch]
- apiGroups: [supercheck.io]
  resources: [runschedules/status, monitors/status]
  verbs: [patch]
# Runner pods and script ConfigMaps carry an ownerReference with blockOwnerDeletion, as do the runs
# of a schedule or a monitor, which (with the OwnerReferencesPermissionEnforcement admission plugin)
# needs update on the owner's finalizers.
- apiGroups: [supercheck.io]
  resources: [testruns/finalizers, jobruns/finalizers, runschedules/finalizers, monitors/finalizers]
  verbs: [update]
# Runner pods: created per attempt, read and deleted by name, listed and watched by label.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete]
# The tail of a running runner's log: its progress lines (Uploading, a JobRun's tests).
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# The script snapshot (created) and the user's script ConfigMaps (read).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create]
# Secrets, by name only (never list or watch): the Secrets a run's env references (their keys are
# checked before a pod starts), a notification's urlFrom, a monitor's HTTP header values, and the runner's upload Secret (created,
# deleted with the attempt).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, delete]
# The shared runner S3 Secret is replaced when its key changed (only this one Secret).
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [supercheck-runner-s3]
  verbs: [update]
{{- if .Values.runner.networkPolicy.enabled }}
# The runner pods' NetworkPolicy: made in each namespace before its first runner pod; only this
# one policy may be read and put back.
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [create]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  resourceNames: [supercheck-runner-egress]
  verbs: [get, update]
{{- end }}
# Events on the runs (Kopf's poster creates them).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{- /*
The runner pods' egress rules to S3: runner.networkPolicy.s3 when given; else the port of
connections.s3EndpointUrl (443 for https, 80 for http without one) on any address but the excluded
CIDRs, which keeps Redis, PostgreSQL and the metadata service out and works with S3 inside or
outside the cluster. Set runner.networkPolicy.s3 to the endpoint's address to narrow it.
*/ -}}
{{- define "supercheck.s3Egress" -}}
{{- $np := .Values.runner.networkPolicy -}}
{{- if $np.s3 -}}
{{- toJson $np.s3 -}}
{{- else -}}
{{- $url := urlParse .Values.connections.s3EndpointUrl -}}
{{- $port := 0 -}}
{{- if regexMatch ":[0-9]+$" $url.host -}}
{{- $port = regexFind "[0-9]+$" $url.host | atoi -}}
{{- else if eq $url.scheme "https" -}}
{{- $port = 443 -}}
{{- else -}}
{{- $port = 80 -}}
{{- end -}}
{{- toJson (list (dict "ports" (list (dict "protocol" "TCP" "port" $port)))) -}}
{{- end -}}
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
