{{- define "shoal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "shoal.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "shoal.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* ID=ZONE@ADDR for every initial node, as SHOAL_PEERS wants them. */}}
{{- define "shoal.peers" -}}
{{- $full := include "shoal.fullname" . -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.replicas) -}}
{{- $zone := index $.Values.zones (mod $i (len $.Values.zones)) -}}
{{- $peers = append $peers (printf "%d=%s@%s-%d.%s-headless.%s.svc:%d" (add $i 1) $zone $full $i $full $.Release.Namespace (int $.Values.ports.grpc)) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}
