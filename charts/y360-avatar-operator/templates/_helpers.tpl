{{/* Chart name, shortened to the 63 characters of a label value. */}}
{{- define "y360.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: the release name, followed by the chart name unless the
release name already contains it.
*/}}
{{- define "y360.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "y360.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "y360.selectorLabels" -}}
app.kubernetes.io/name: {{ include "y360.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "y360.labels" -}}
{{ include "y360.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "y360.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "y360.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "y360.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
An IntOrString value: a quoted percentage such as "50%", or an integer. Helm reads numbers
from values files as float64, which would print large values in exponent form.
*/}}
{{- define "y360.intOrString" -}}
{{- if kindIs "string" . }}
{{- quote . }}
{{- else }}
{{- int64 . }}
{{- end }}
{{- end }}

{{/* Namespace of the leader-election Lease. */}}
{{- define "y360.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/* Value of --admin-address: host and port, with brackets around an IPv6 host. */}}
{{- define "y360.adminAddress" -}}
{{- $host := .Values.admin.bindAddress }}
{{- if contains ":" $host }}
{{- printf "[%s]:%d" $host (int64 .Values.admin.port) }}
{{- else }}
{{- printf "%s:%d" $host (int64 .Values.admin.port) }}
{{- end }}
{{- end }}

{{/*
Checks that combine several values, which values.schema.json cannot express. Each failure
names the values involved and how to fix them.
*/}}
{{- define "y360.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas is %d, but more than one replica requires leaderElection.enabled=true: without a leader every replica would upload the same portraits" (int .Values.replicas)) }}
{{- end }}
{{- if and .Values.leaderElection.enabled (ge (int .Values.leaderElection.leaseGraceSeconds) (int .Values.leaderElection.leaseDurationSeconds)) }}
{{- fail (printf "leaderElection.leaseGraceSeconds (%d) must be less than leaderElection.leaseDurationSeconds (%d): the leader renews the Lease that many seconds before it expires" (int .Values.leaderElection.leaseGraceSeconds) (int .Values.leaderElection.leaseDurationSeconds)) }}
{{- end }}
{{- if ge (int .Values.shutdownTimeoutSeconds) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "shutdownTimeoutSeconds (%d) must be less than terminationGracePeriodSeconds (%d), or Kubernetes kills the operator before it finishes in-flight reconciles" (int .Values.shutdownTimeoutSeconds) (int .Values.terminationGracePeriodSeconds)) }}
{{- end }}
{{- if .Values.networkPolicy.enabled }}
{{- if not .Values.networkPolicy.apiServer.cidrs }}
{{- fail "networkPolicy.apiServer.cidrs is empty, but networkPolicy.enabled=true needs the API server addresses: list the kubernetes Service IP and the API server endpoint IPs as CIDRs" }}
{{- end }}
{{- if not .Values.networkPolicy.directoryApi.cidrs }}
{{- fail "networkPolicy.directoryApi.cidrs is empty, but networkPolicy.enabled=true needs the Directory API addresses: list the CIDRs that api360.yandex.net (or your on-premises cloud-api host) resolves to" }}
{{- end }}
{{- end }}
{{- if .Values.podDisruptionBudget.enabled }}
{{- $min := .Values.podDisruptionBudget.minAvailable }}
{{- $max := .Values.podDisruptionBudget.maxUnavailable }}
{{- if and (kindIs "invalid" $min) (kindIs "invalid" $max) }}
{{- fail "podDisruptionBudget.enabled=true needs one of podDisruptionBudget.minAvailable and podDisruptionBudget.maxUnavailable" }}
{{- end }}
{{- if and (not (kindIs "invalid" $min)) (not (kindIs "invalid" $max)) }}
{{- fail "podDisruptionBudget.minAvailable and podDisruptionBudget.maxUnavailable are both set. Set one of them, and the other to null" }}
{{- end }}
{{- end }}
{{- end }}
