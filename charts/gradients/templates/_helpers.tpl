{{- define "gradients.name" -}}gradients-operator{{- end -}}
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
