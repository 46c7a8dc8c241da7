{{/* Chart name, at most 63 characters. */}}
{{- define "connector-auth-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name, plus the chart name unless the release name contains it. At most
63 characters (DNS label), since it names Services.
*/}}
{{- define "connector-auth-operator.fullname" -}}
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

{{- define "connector-auth-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "connector-auth-operator.labels" -}}
helm.sh/chart: {{ include "connector-auth-operator.chart" . }}
{{ include "connector-auth-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "connector-auth-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "connector-auth-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "connector-auth-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "connector-auth-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "connector-auth-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the leader-election Lease (LEASE_NAME), in the release namespace. */}}
{{- define "connector-auth-operator.leaseName" -}}
{{- include "connector-auth-operator.fullname" . }}
{{- end }}

{{/*
Every shard's Lease, as a YAML flow list: shard 0's is the Lease name itself, shard i's
`<name>-<i>-of-<n>` (src/controller/leader/lease.rs).
*/}}
{{- define "connector-auth-operator.leaseNames" -}}
{{- $base := include "connector-auth-operator.leaseName" . }}
{{- $n := int .Values.leaderElection.shards }}
{{- $names := list $base }}
{{- range $i := untilStep 1 $n 1 }}
{{- $names = append $names (printf "%s-%d-of-%d" $base $i $n) }}
{{- end }}
{{- $names | toJson }}
{{- end }}

{{/*
RBAC rules from a data file under files/rbac/ (a YAML mapping with `rules:`), rendered with
`tpl` for the few names that depend on the release. tests/chart_rbac.rs reads the same files.
Usage: include "connector-auth-operator.rules" (list . "controller")
*/}}
{{- define "connector-auth-operator.rules" -}}
{{- $root := index . 0 }}
{{- $file := printf "files/rbac/%s.yaml" (index . 1) }}
{{- $data := tpl ($root.Files.Get $file) $root | fromYaml }}
{{- if or (hasKey $data "Error") (not $data.rules) }}
{{- fail (printf "%s: expected a mapping with rules" $file) }}
{{- end }}
{{- toYaml $data.rules }}
{{- end }}

{{/* Settings that cannot work together, checked once. */}}
{{- define "connector-auth-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 requires leaderElection.enabled: without a leader every replica would refresh the same tokens (and a rotating refresh token would be reused)" }}
{{- end }}
{{- if and (gt (int .Values.leaderElection.shards) 1) (not .Values.leaderElection.enabled) }}
{{- fail "leaderElection.shards > 1 requires leaderElection.enabled: shards are held through Leases" }}
{{- end }}
{{- if and .Values.callback.enabled (not .Values.callback.externalUrl) }}
{{- fail "callback.enabled requires callback.externalUrl (the https:// base URL browsers reach the callback at)" }}
{{- end }}
{{- if and .Values.callback.ingress.enabled (not .Values.callback.enabled) }}
{{- fail "callback.ingress.enabled requires callback.enabled" }}
{{- end }}
{{- end }}

{{/* Host of the callback Ingress: callback.ingress.host, else the host of callback.externalUrl. */}}
{{- define "connector-auth-operator.callbackHost" -}}
{{- $host := .Values.callback.ingress.host }}
{{- if not $host }}
{{- $host = (urlParse .Values.callback.externalUrl).host | splitList ":" | first }}
{{- end }}
{{- required "callback.ingress.host (or a callback.externalUrl with a host) is required" $host }}
{{- end }}
