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

{{/* wasmPlugin.topology, checked with the values it needs: "gateway" or "sidecar". */}}
{{- define "llmrl.topology" -}}
{{- $w := .Values.wasmPlugin -}}
{{- if or (hasKey $w "selector") (hasKey $w "match") -}}
{{- fail "wasmPlugin.selector and wasmPlugin.match are no longer read: set wasmPlugin.gateway.selector/.match (topology gateway) or wasmPlugin.sidecar.selector/.match (topology sidecar)" -}}
{{- end -}}
{{- $t := $w.topology -}}
{{- if not (has $t (list "gateway" "sidecar")) -}}
{{- fail (printf "wasmPlugin.topology must be gateway or sidecar, got %q" (toString $t)) -}}
{{- end -}}
{{- $where := index $w $t -}}
{{- if not (and $where $where.selector $where.selector.matchLabels) -}}
{{- fail (printf "wasmPlugin.%s.selector.matchLabels is empty: a WasmPlugin without a selector runs in every proxy of its namespace" $t) -}}
{{- end -}}
{{- if eq $t "gateway" -}}
{{- if not $where.namespace }}{{ fail "wasmPlugin.gateway.namespace is empty: give the gateway's namespace" }}{{ end -}}
{{- if eq $where.namespace $w.meshRootNamespace -}}
{{- fail (printf "wasmPlugin.gateway.namespace is %q, Istio's root namespace: a WasmPlugin there applies to the pods with the selector's labels in every namespace, so any application could get the service token. Run the gateway in a namespace of its own" $where.namespace) -}}
{{- end -}}
{{- if not $where.serviceAccount }}{{ fail "wasmPlugin.gateway.serviceAccount is empty: give the gateway pods' ServiceAccount" }}{{ end -}}
{{- end -}}
{{- $t -}}
{{- end }}

{{/* The WasmPlugin's namespace: the gateway's, or the release's for sidecars. */}}
{{- define "llmrl.pluginNamespace" -}}
{{- if eq (include "llmrl.topology" .) "gateway" }}{{ .Values.wasmPlugin.gateway.namespace }}{{ else }}{{ .Release.Namespace }}{{ end -}}
{{- end }}

{{/* The AuthorizationPolicy's principals (JSON list): authorizationPolicy.principals, else the topology's identities. */}}
{{- define "llmrl.principals" -}}
{{- $p := list -}}
{{- if .Values.authorizationPolicy.principals -}}
{{- $p = .Values.authorizationPolicy.principals -}}
{{- else -}}
{{- $td := .Values.authorizationPolicy.trustDomain -}}
{{- if eq (include "llmrl.topology" .) "gateway" -}}
{{- $p = list (printf "%s/ns/%s/sa/%s" $td .Values.wasmPlugin.gateway.namespace .Values.wasmPlugin.gateway.serviceAccount) -}}
{{- else -}}
{{- range .Values.wasmPlugin.sidecar.serviceAccounts }}{{ $p = append $p (printf "%s/ns/%s/sa/%s" $td $.Release.Namespace .) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- toJson $p -}}
{{- end }}
