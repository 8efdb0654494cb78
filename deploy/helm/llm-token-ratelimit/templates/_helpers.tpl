{{/* Labels of every object: `app` (what selectors use) plus, with helmLabels, Helm's usual ones. */}}
{{- define "llmrl.labels" -}}
app: {{ .name }}
{{- if .root.Values.helmLabels }}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: llm-token-ratelimit
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}
{{- end }}

{{- define "llmrl.redisName" -}}
{{ default (printf "%s-redis" .Values.name) .Values.redis.bundled.name }}
{{- end }}

{{- define "llmrl.redisSecret" -}}
{{ default (printf "%s-redis" .Values.name) .Values.redis.existingSecret }}
{{- end }}

{{- define "llmrl.tokenSecret" -}}
{{ default (printf "%s-token" .Values.name) .Values.serviceTokens.existingSecret }}
{{- end }}

{{- define "llmrl.rulesConfigMap" -}}
{{ default (printf "%s-rules" .Values.name) .Values.rules.existingConfigMap }}
{{- end }}

{{/* serviceTokens.token, required unless serviceTokens.existingSecret is set. */}}
{{- define "llmrl.token" -}}
{{- if not .Values.serviceTokens.existingSecret -}}
{{- $t := required "serviceTokens.token is required (at least 16 printable ASCII characters, e.g. openssl rand -hex 32), or set serviceTokens.existingSecret" .Values.serviceTokens.token -}}
{{- if lt (len $t) 16 }}{{ fail "serviceTokens.token must be at least 16 characters" }}{{ end -}}
{{- $t -}}
{{- end -}}
{{- end }}
