{{/* The chart's name, or nameOverride. */}}
{{- define "kubefixtures-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name (63 characters at most: some name fields are DNS labels): the
fullnameOverride, else the release name, else the release name and the chart's name.
*/}}
{{- define "kubefixtures-operator.fullname" -}}
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

{{/* The chart's name and version, for the helm.sh/chart label. */}}
{{- define "kubefixtures-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object. Deliberately not app.kubernetes.io/managed-by=kubefixtures: the
operator reaps what carries it.
*/}}
{{- define "kubefixtures-operator.labels" -}}
helm.sh/chart: {{ include "kubefixtures-operator.chart" . }}
{{ include "kubefixtures-operator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/component: operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels the Deployment selects its pods by: stable across upgrades. */}}
{{- define "kubefixtures-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubefixtures-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as: created, or an existing one named in values. */}}
{{- define "kubefixtures-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubefixtures-operator.fullname" .) .Values.serviceAccount.name }}
{{- else if .Values.serviceAccount.name }}
{{- .Values.serviceAccount.name }}
{{- else }}
{{- fail "serviceAccount.create=false needs serviceAccount.name: the existing ServiceAccount the operator runs as" }}
{{- end }}
{{- end }}

{{/* The operator image: the tag defaults to the chart's appVersion. */}}
{{- define "kubefixtures-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
grace as the operator's --grace reads it: whole numbers in full (a values file's 1000000 is a
float, which Go would print as 1e+06), fractions as they are.
*/}}
{{- define "kubefixtures-operator.grace" -}}
{{- $grace := .Values.grace | float64 }}
{{- if eq $grace (floor $grace) }}{{ int64 $grace }}{{ else }}{{ $grace }}{{ end }}
{{- end }}
