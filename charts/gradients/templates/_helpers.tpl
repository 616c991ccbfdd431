{{- /* The prefix of every object's name: release-prefixed, so two releases install side by
side (`gradients` gives `gradients-operator`, `team-b` gives `team-b-gradients-operator`);
fullnameOverride replaces it. Also the leader Lease's name. */ -}}
{{- define "gradients.name" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else if contains "gradients" .Release.Name -}}
{{- printf "%s-operator" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-gradients-operator" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- define "gradients.labels" -}}
app.kubernetes.io/name: gradients-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "gradients.selectorLabels" -}}
app.kubernetes.io/name: gradients-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "gradients.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- /* The namespaces served, as a YAML list: watchNamespaces, or the release namespace. */ -}}
{{- define "gradients.namespaces" -}}
{{- toYaml (.Values.watchNamespaces | default (list .Release.Namespace)) }}
{{- end -}}
