{{/* The labels every object of one service carries. */}}
{{- define "avatar.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: avatar
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end }}

{{- define "avatar.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/* <registry>/<prefix><service>:<tag> */}}
{{- define "avatar.image" -}}
{{- $image := .root.Values.image -}}
{{- $repository := printf "%s%s" $image.prefix .name -}}
{{- if $image.registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" $image.registry) $repository }}{{ end -}}
{{ $repository }}:{{ .tag | default $image.tag }}
{{- end }}

{{- define "avatar.secret" -}}
{{ .Values.secrets.existingSecret | default (printf "%s-secrets" .Release.Name) }}
{{- end }}

{{/* Non-root, no privilege escalation, no capabilities, a read-only root: the restricted Pod Security level. */}}
{{- define "avatar.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 10001 }}
runAsGroup: {{ .uid | default 10001 }}
fsGroup: {{ .uid | default 10001 }}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "avatar.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}

{{/* REDIS_PASSWORD from the Secret, and REDIS_URL built on it. */}}
{{- define "avatar.redisEnv" -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "avatar.secret" . }}, key: redis-password}
- name: REDIS_URL
  {{- if .Values.redis.enabled }}
  value: "redis://:$(REDIS_PASSWORD)@{{ .Release.Name }}-redis:6379/0"
  {{- else }}
  {{- $url := required "redis.externalUrl is required when redis.enabled is false" .Values.redis.externalUrl }}
  {{- $scheme := regexFind "^rediss?://" $url }}
  value: {{ printf "%s:$(REDIS_PASSWORD)@%s" $scheme (trimPrefix $scheme $url) | quote }}
  {{- end }}
{{- end }}

{{- define "avatar.env" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{- define "avatar.name" -}}
{{ printf "%s-%s" .root.Release.Name .name }}
{{- end }}

{{/* The root stays read-only: /tmp is the one writable place besides the volumes (caches go there too). */}}
{{- define "avatar.tmpEnv" -}}
- {name: HOME, value: /tmp}
- {name: XDG_CACHE_HOME, value: /tmp/.cache}
{{- end }}
