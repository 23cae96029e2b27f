{{- define "xct.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "xct.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "xct.labels" -}}
app.kubernetes.io/name: {{ include "xct.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "xct.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xct.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "xct.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "xct.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "xct.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.gpu.enabled -}}{{- $tag = printf "%s-cuda" $tag -}}{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "xct.namespacedRules" -}}
- apiGroups: ["xct.dev"]
  resources: ["xctruns", "xctapprovals"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["xct.dev"]
  resources: ["xctruns/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["xct.dev"]
  resources: ["xctruns/finalizers"]
  verbs: ["update"]
- apiGroups: ["xct.dev"]
  resources: ["xctapprovals/status"]
  verbs: ["get", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Archived step history: new ConfigMaps (generateName xct-history-), owned
# by their run. The operator never reads, updates or deletes a ConfigMap.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
{{- end -}}

{{- define "xct.impersonationRule" -}}
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["impersonate"]
  {{- if not .Values.impersonation.anyServiceAccount }}
  resourceNames: {{ required "impersonation.serviceAccountNames needs a name unless impersonation.anyServiceAccount" .Values.impersonation.serviceAccountNames | toJson }}
  {{- end }}
{{- end -}}
