{{/* The chart name, or nameOverride. */}}
{{- define "modelgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name if it already
contains the chart name, else "<release>-<chart>". Release "modelgate" gives the names
config/default uses (modelgate-controller, modelgate-gateway, ...).
*/}}
{{- define "modelgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelgate.controller.fullname" -}}
{{ include "modelgate.fullname" . }}-controller
{{- end }}

{{- define "modelgate.gateway.fullname" -}}
{{ include "modelgate.fullname" . }}-gateway
{{- end }}

{{- define "modelgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "modelgate.labels" -}}
helm.sh/chart: {{ include "modelgate.chart" . }}
app.kubernetes.io/name: {{ include "modelgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelgate
{{- end }}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "gateway"). */}}
{{- define "modelgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelgate.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects. */}}
{{- define "modelgate.componentLabels" -}}
{{ include "modelgate.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "modelgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* --namespace and --selector, shared by both processes (empty when unset). */}}
{{- define "modelgate.scopeArgs" -}}
{{- with .Values.scope.namespace }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- with .Values.scope.selector }}
- {{ printf "--selector=%s" . | quote }}
{{- end }}
{{- end }}

{{/* Default affinity: prefer one replica per node. */}}
{{- define "modelgate.affinity" -}}
{{- if .affinity }}
{{- toYaml .affinity }}
{{- else }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "modelgate.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 12 }}
{{- end }}
{{- end }}

{{/* The gateways' shared usage store URL, or empty for each replica's own counters. */}}
{{- define "modelgate.usageStore" -}}
{{- if .Values.tenancy.redis.url }}
{{- .Values.tenancy.redis.url }}
{{- else if .Values.tenancy.redis.deploy }}
{{- printf "redis://%s-redis.%s.svc:6379" (include "modelgate.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}
