{{/* Names and labels shared by every template (see deploy/helm/render.py for the syntax). */}}
{{- define "waystation.fullname" -}}
{{ .Release.Name }}-{{ .Chart.Name }}
{{- end }}

{{- define "waystation.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "waystation.secretName" -}}
{{- if .Values.secret.existingSecret -}}
{{ .Values.secret.existingSecret }}
{{- else -}}
{{ .Release.Name }}-{{ .Chart.Name }}
{{- end }}
{{- end }}

{{- define "waystation.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "waystation.labels" -}}
{{ include "waystation.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{/* The pod and container security settings: the image's non-root user, nothing more. */}}
{{- define "waystation.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "waystation.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/* Settings from the ConfigMap and the Secret, for every container of the app. */}}
{{- define "waystation.envFrom" -}}
- configMapRef:
    name: {{ .Release.Name }}-{{ .Chart.Name }}-config
- secretRef:
    name: {{ include "waystation.secretName" . }}
{{- end }}
