{{/* The release's full name: the release name, unless it lacks the chart name. */}}
{{- define "kubefixtures-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubefixtures-operator.serviceAccountName" -}}
{{- default (include "kubefixtures-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "kubefixtures-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Deliberately not app.kubernetes.io/managed-by=kubefixtures: the operator reaps that. */}}
{{- define "kubefixtures-operator.labels" -}}
{{ include "kubefixtures-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
