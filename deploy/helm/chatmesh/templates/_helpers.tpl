{{/* Names and labels shared by every template. */}}

{{- define "chatmesh.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "chatmesh.labels" -}}
app.kubernetes.io/part-of: chatmesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one role ("gateway" or "worker"). */}}
{{- define "chatmesh.selector" -}}
app.kubernetes.io/name: {{ include "chatmesh.fullname" .root }}-{{ .role }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "chatmesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* The pod security context of every chatmesh pod (the image runs as uid 10001). */}}
{{- define "chatmesh.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
# Mounted secrets (the bus key, 0440) are readable through this group.
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "chatmesh.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Environment every chatmesh container gets. */}}
{{- define "chatmesh.env" -}}
- name: RUST_LOG
  value: {{ .Values.logFilter | quote }}
{{- end -}}

{{/* envFrom of the file store's credentials, when files are on and a Secret is named. */}}
{{- define "chatmesh.filesEnvFrom" -}}
{{- if and .Values.files.enabled .Values.files.credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.files.credentialsSecret }}
{{- end }}
{{- end -}}
