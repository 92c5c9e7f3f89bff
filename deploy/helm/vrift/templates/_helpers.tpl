{{- define "vrift.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vrift.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "vrift.secretName" -}}
{{- default (printf "%s-cluster" (include "vrift.fullname" .)) .Values.cluster.existingSecret -}}
{{- end -}}
