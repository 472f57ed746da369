{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "noreply-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name alone when it already contains the chart name. */}}
{{- define "noreply-relay.fullname" -}}
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

{{- define "noreply-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "noreply-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "noreply-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "noreply-relay.labels" -}}
helm.sh/chart: {{ include "noreply-relay.chart" . }}
{{ include "noreply-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: noreply-relay
{{- end }}

{{- define "noreply-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "noreply-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "noreply-relay.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where things are mounted in the pod; the rendered config refers to these paths. */}}
{{- define "noreply-relay.configDir" -}}/etc/noreply-relay{{- end }}
{{- define "noreply-relay.credentialDir" -}}/var/run/secrets/noreply-relay/credential{{- end }}
{{- define "noreply-relay.workloadIdentityTokenFile" -}}/var/run/secrets/azure/tokens/azure-identity-token{{- end }}

{{/* The credential type of the top-level app, or "" when no app is configured. */}}
{{- define "noreply-relay.credentialType" -}}
{{- if .Values.app.clientId }}{{ .Values.app.credential.type }}{{ end }}
{{- end }}

{{/* True ("true") when the chart itself creates the credential Secret. */}}
{{- define "noreply-relay.createsCredentialSecret" -}}
{{- $c := .Values.app.credential }}
{{- $type := include "noreply-relay.credentialType" . }}
{{- if and (eq $type "secret") (not $c.secret.existingSecret) }}true
{{- else if and (eq $type "certificate") (not $c.certificate.existingSecret) }}true
{{- end }}
{{- end }}

{{- define "noreply-relay.credentialSecretName" -}}
{{- $c := .Values.app.credential }}
{{- $type := include "noreply-relay.credentialType" . }}
{{- if and (eq $type "secret") $c.secret.existingSecret }}{{ $c.secret.existingSecret }}
{{- else if and (eq $type "certificate") $c.certificate.existingSecret }}{{ $c.certificate.existingSecret }}
{{- else }}{{ include "noreply-relay.fullname" . }}-credential
{{- end }}
{{- end }}

{{/* The `credential` block of the config file, pointing at the files this chart mounts. */}}
{{- define "noreply-relay.credentialConfig" -}}
{{- $c := .Values.app.credential }}
{{- $dir := include "noreply-relay.credentialDir" . }}
{{- $out := dict "type" $c.type }}
{{- if eq $c.type "secret" }}
{{- $_ := set $out "secretFile" (printf "%s/client-secret" $dir) }}
{{- if or $c.secret.secondaryValue $c.secret.secondaryKey }}
{{- $_ := set $out "secondarySecretFile" (printf "%s/client-secret-next" $dir) }}
{{- end }}
{{- else if eq $c.type "certificate" }}
{{- $_ := set $out "certificateFile" (printf "%s/certificate.pem" $dir) }}
{{- $_ := set $out "sendCertificateChain" $c.certificate.sendCertificateChain }}
{{- else if eq $c.type "workloadIdentity" }}
{{- $_ := set $out "tokenFile" (include "noreply-relay.workloadIdentityTokenFile" .) }}
{{- end }}
{{- with $c.expiresAt }}
{{- $_ := set $out "expiresAt" . }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The config file (src/config/schema.ts): exactly its top-level keys, nothing chart-specific.
Empty optional sections are left out so the service's own defaults apply.
*/}}
{{- define "noreply-relay.config" -}}
{{- $v := .Values }}
{{- $cfg := dict }}
{{- range $key := list "cloud" "tls" "idempotency" "consent" }}
{{- with (get $v $key) }}
{{- $_ := set $cfg $key . }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "server" (deepCopy ($v.server | default dict)) }}
{{- if $v.app.clientId }}
{{- $_ := set $cfg "app" (dict "clientId" $v.app.clientId "credential" (include "noreply-relay.credentialConfig" . | fromYaml)) }}
{{- end }}
{{- $_ := set $cfg "tenants" ($v.tenants | default dict) }}
{{- $_ := set $cfg "callers" ($v.callers | default dict) }}
{{- toYaml $cfg }}
{{- end }}

{{/* Seconds the process may need after SIGTERM: the drain timeout rounded up. */}}
{{- define "noreply-relay.drainTimeoutSeconds" -}}
{{- $server := .Values.server | default dict }}
{{- if hasKey $server "drainTimeoutSeconds" }}{{ ceil $server.drainTimeoutSeconds | int }}{{ else }}20{{ end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: preStop sleep + drain timeout + 10 s for the process to exit,
unless set explicitly (then it must still exceed preStop + drain, or in-flight sends are killed).
*/}}
{{- define "noreply-relay.terminationGracePeriodSeconds" -}}
{{- $drain := include "noreply-relay.drainTimeoutSeconds" . | int }}
{{- $preStop := .Values.preStopSleepSeconds | int }}
{{- $floor := add $drain $preStop }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $floor 10 }}
{{- else if le (.Values.terminationGracePeriodSeconds | int) $floor }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than preStopSleepSeconds + server.drainTimeoutSeconds (%d), or Kubernetes kills sends still draining" (.Values.terminationGracePeriodSeconds | int) $floor) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds | int }}
{{- end }}
{{- end }}

{{/* Label matchers that pick this release's series in the alert expressions. */}}
{{- define "noreply-relay.metricSelector" -}}
{{- .Values.prometheusRule.metricSelector | default (printf "job=%q, namespace=%q" (include "noreply-relay.fullname" .) .Release.Namespace) }}
{{- end }}

{{/*
Checks that values.schema.json cannot express; a failure stops install with a message that
names the value. (The service re-validates the whole config at start-up.)
*/}}
{{- define "noreply-relay.validate" -}}
{{- $v := .Values }}
{{- $c := $v.app.credential }}
{{- if $v.app.clientId }}
{{- if eq $c.type "secret" }}
{{- if and $c.secret.value $c.secret.existingSecret }}
{{- fail "app.credential.secret: give value or existingSecret, not both" }}
{{- end }}
{{- if not (or $c.secret.value $c.secret.existingSecret) }}
{{- fail "app.credential.secret: give existingSecret (a Secret you created) or value; or use app.credential.type certificate or workloadIdentity" }}
{{- end }}
{{- if and $c.secret.secondaryValue $c.secret.existingSecret }}
{{- fail "app.credential.secret.secondaryValue cannot be used with existingSecret: put the next secret in that Secret and set secondaryKey" }}
{{- end }}
{{- if and $c.secret.secondaryKey (not $c.secret.existingSecret) }}
{{- fail "app.credential.secret.secondaryKey needs existingSecret (with value, use secondaryValue)" }}
{{- end }}
{{- else if eq $c.type "certificate" }}
{{- if and $c.certificate.pem $c.certificate.existingSecret }}
{{- fail "app.credential.certificate: give pem or existingSecret, not both" }}
{{- end }}
{{- if not (or $c.certificate.pem $c.certificate.existingSecret) }}
{{- fail "app.credential.certificate: give existingSecret (a Secret holding one PEM with certificate and private key) or pem" }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $tenant := $v.tenants }}
{{- if not (or $v.app.clientId $tenant.app) }}
{{- fail (printf "tenants.%s.app: no app: set app.clientId (and app.credential) or this tenant's app" $key) }}
{{- end }}
{{- end }}
{{- range $name, $caller := $v.callers }}
{{- range $t := $caller.tenants }}
{{- if and (ne $t "*") (not (hasKey ($v.tenants | default dict) $t)) }}
{{- fail (printf "callers.%s.tenants: unknown tenant %q" $name $t) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Events in the last $w of a counter, per tenant. prom-client creates a labelled counter at its
first increment, so increase() alone misses the first event of a new series (pod restart,
first denial ever): series that did not exist $w ago count with their whole value.
*/}}
{{- define "noreply-relay.eventsExpr" -}}
sum by (namespace, job, tenant) (
  ({{ .m }} unless {{ .m }} offset {{ .w }})
  or
  increase({{ .m }}[{{ .w }}])
) > 0
{{- end }}
