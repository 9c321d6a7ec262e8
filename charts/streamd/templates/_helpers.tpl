{{/*
Names and labels. fullname = release name, unless it already contains the chart name.
*/}}
{{- define "streamd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streamd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "streamd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streamd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "streamd.labels" -}}
helm.sh/chart: {{ include "streamd.chart" . }}
{{ include "streamd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: daemon
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "streamd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "streamd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the spool volume is mounted; the config's spool.path is forced below it. */}}
{{- define "streamd.spoolDir" -}}/var/lib/streamd{{- end }}

{{/* Where secrets.files are mounted (one directory per entry), for ${file:...} in the config. */}}
{{- define "streamd.secretsDir" -}}/etc/streamd/secrets{{- end }}

{{/* The PVC holding the spool, when persistence is on. */}}
{{- define "streamd.spoolClaim" -}}
{{- .Values.spool.persistence.existingClaim | default (printf "%s-spool" (include "streamd.fullname" .)) }}
{{- end }}

{{/*
The streamd config file: .Values.config with the fields the chart owns forced:
  spool.path      -> the spool volume
  http.listen     -> 0.0.0.0:<http.port> (probes, Service and ServiceMonitor use that port)
  shutdown_grace  -> shutdownGraceSeconds (terminationGracePeriodSeconds is derived from it)
*/}}
{{- define "streamd.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $spool := merge (dict "path" (printf "%s/spool.db" (include "streamd.spoolDir" .))) (deepCopy ($cfg.spool | default dict)) }}
{{- $http := merge (dict "listen" (printf "0.0.0.0:%d" (int .Values.http.port))) (deepCopy ($cfg.http | default dict)) }}
{{- $_ := set $cfg "spool" $spool }}
{{- $_ = set $cfg "http" $http }}
{{- $_ = set $cfg "shutdown_grace" (printf "%ds" (int .Values.shutdownGraceSeconds)) }}
{{- toYaml $cfg }}
{{- end }}

{{/* terminationGracePeriodSeconds: shutdown_grace plus a margin for draining sources and HTTP. */}}
{{- define "streamd.terminationGrace" -}}
{{- add (int .Values.shutdownGraceSeconds) (int .Values.terminationGraceMarginSeconds) }}
{{- end }}

{{/* "true" when the config enables the cluster (several replicas sharing the sources), else "". */}}
{{- define "streamd.cluster" -}}
{{- $c := (.Values.config | default dict).cluster | default dict -}}
{{- if $c.enabled }}true{{ end -}}
{{- end }}
