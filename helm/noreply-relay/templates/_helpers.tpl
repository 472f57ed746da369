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
{{- define "noreply-relay.redisDir" -}}/var/run/secrets/noreply-relay/redis{{- end }}
{{- define "noreply-relay.redisCaDir" -}}/var/run/secrets/noreply-relay/redis-ca{{- end }}
{{- define "noreply-relay.metricsDir" -}}/var/run/secrets/noreply-relay/metrics{{- end }}

{{/* The container port of the API (env PORT); /metrics too unless metrics.port is set. */}}
{{- define "noreply-relay.apiPort" -}}8080{{- end }}

{{/* The separate metrics port ("" when /metrics stays on the API port). */}}
{{- define "noreply-relay.metricsPort" -}}
{{- $m := .Values.metrics | default dict }}
{{- if not (kindIs "invalid" $m.port) }}{{ $m.port | int }}{{ end }}
{{- end }}

{{/* True ("true") when GET /metrics needs the bearer token from metrics.token.existingSecret. */}}
{{- define "noreply-relay.metricsToken" -}}
{{- $m := .Values.metrics | default dict }}
{{- if and $m.token $m.token.enabled }}true{{ end }}
{{- end }}

{{/*
The `metrics` block of the config file: the mounted token file and the separate port; empty
(and left out) by default, so /metrics stays open on the API port as the service's default.
*/}}
{{- define "noreply-relay.metricsConfig" -}}
{{- $out := dict }}
{{- if include "noreply-relay.metricsToken" . }}
{{- $_ := set $out "tokenFile" (printf "%s/token" (include "noreply-relay.metricsDir" .)) }}
{{- end }}
{{- with include "noreply-relay.metricsPort" . }}
{{- $_ := set $out "port" (. | int) }}
{{- end }}
{{- with $out }}{{ toYaml . }}{{ end }}
{{- end }}

{{/*
The NetworkPolicy's namespace selectors, as YAML ("" when left out). A selector given in the
values replaces the default (a default written in values.yaml would be merged into it by Helm,
adding labels nobody asked for): {} means the default, null (the key removed) leaves it out.
*/}}
{{- define "noreply-relay.clientNamespaceSelector" -}}
{{- $np := .Values.networkPolicy }}
{{- if hasKey $np "clientNamespaceSelector" }}
{{- toYaml ($np.clientNamespaceSelector | default (dict "matchLabels" (dict "noreply-relay.io/client" "true"))) }}
{{- end }}
{{- end }}
{{- define "noreply-relay.metricsNamespaceSelector" -}}
{{- $np := .Values.networkPolicy }}
{{- if hasKey $np "metricsNamespaceSelector" }}
{{- toYaml ($np.metricsNamespaceSelector | default (dict "matchLabels" (dict "kubernetes.io/metadata.name" "monitoring"))) }}
{{- end }}
{{- end }}

{{/* True ("true") when the release can run more than one pod at a time. */}}
{{- define "noreply-relay.multiplePods" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* True ("true") when the store is Redis. */}}
{{- define "noreply-relay.redisStore" -}}
{{- if eq .Values.store.type "redis" }}true{{ end }}
{{- end }}

{{/* True ("true") when the pod mounts a Redis CA (from a Secret or a ConfigMap). */}}
{{- define "noreply-relay.redisCa" -}}
{{- $t := .Values.store.redis.tls }}
{{- if and (include "noreply-relay.redisStore" .) (or $t.caSecret $t.caConfigMap) }}true{{ end }}
{{- end }}

{{/*
The `store` block of the config file for type redis, pointing at the files this chart mounts
from store.redis.existingSecret (the URL or password never enter the ConfigMap).
*/}}
{{- define "noreply-relay.storeConfig" -}}
{{- $s := .Values.store }}
{{- $r := $s.redis }}
{{- $dir := include "noreply-relay.redisDir" . }}
{{- $out := dict "type" "redis" "keyPrefix" $s.keyPrefix "onUnavailable" $s.onUnavailable "leaseSeconds" $s.leaseSeconds "commandTimeoutMs" $s.commandTimeoutMs "connectTimeoutSeconds" $s.connectTimeoutSeconds }}
{{- if $r.url }}
{{- $_ := set $out "url" $r.url }}
{{- else }}
{{- $_ := set $out "urlFile" (printf "%s/url" $dir) }}
{{- end }}
{{- if $r.passwordKey }}
{{- $_ := set $out "passwordFile" (printf "%s/password" $dir) }}
{{- end }}
{{- $tls := dict }}
{{- if include "noreply-relay.redisCa" . }}
{{- $_ := set $tls "caFile" (printf "%s/ca.crt" (include "noreply-relay.redisCaDir" .)) }}
{{- end }}
{{- with $r.tls.serverName }}
{{- $_ := set $tls "serverName" . }}
{{- end }}
{{- with $tls }}
{{- $_ := set $out "tls" . }}
{{- end }}
{{- toYaml $out }}
{{- end }}

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
{{- if include "noreply-relay.redisStore" . }}
{{- $_ := set $cfg "store" (include "noreply-relay.storeConfig" . | fromYaml) }}
{{- end }}
{{- with include "noreply-relay.metricsConfig" . }}
{{- $_ := set $cfg "metrics" (. | fromYaml) }}
{{- end }}
{{- if include "noreply-relay.smtpEnabled" . }}
{{- $_ := set $cfg "smtp" (include "noreply-relay.smtpConfig" . | fromYaml) }}
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
{{- include "noreply-relay.validateStore" . }}
{{- include "noreply-relay.validateMetrics" . }}
{{- with ($v.server | default dict).http }}
{{- if and (hasKey . "requestTimeoutSeconds") (hasKey . "headersTimeoutSeconds") }}
{{- if lt (float64 .requestTimeoutSeconds) (float64 .headersTimeoutSeconds) }}
{{- fail (printf "server.http.requestTimeoutSeconds (%v) must be at least server.http.headersTimeoutSeconds (%v): the whole request cannot take less time than its headers" .requestTimeoutSeconds .headersTimeoutSeconds) }}
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
Events in the last $w of a counter, per tenant (or per the labels in $by). prom-client creates
a labelled counter at its first increment, so increase() alone misses the first event of a new
series (pod restart, first denial ever): series that did not exist $w ago count with their
whole value.
*/}}
{{- define "noreply-relay.eventsExpr" -}}
sum by ({{ .by | default "namespace, job, tenant" }}) (
  ({{ .m }} unless {{ .m }} offset {{ .w }})
  or
  increase({{ .m }}[{{ .w }}])
) > 0
{{- end }}

{{/*
The store values, and the refusal to run several pods that each keep their own state: with
the memory store, N pods would each allow limits.maxConcurrency Graph requests per mailbox and
limits.recipientsPerDay recipients, and replay an Idempotency-Key only on the pod that saw it.
This fails rather than warns because NOTES.txt is not shown by Argo CD, Flux or CI pipelines.
*/}}
{{- define "noreply-relay.validateStore" -}}
{{- $s := .Values.store }}
{{- $r := $s.redis }}
{{- $t := $r.tls }}
{{- if eq $s.type "redis" }}
{{- if and $r.url $r.urlKey }}
{{- fail "store.redis: give url or urlKey (a key of existingSecret holding the URL), not both" }}
{{- end }}
{{- if not (or $r.url $r.urlKey) }}
{{- fail "store.redis: with store.type redis, give url (redis://host:6379/0, no password) or existingSecret and urlKey (a Secret key holding the whole URL)" }}
{{- end }}
{{- if and (or $r.urlKey $r.passwordKey) (not $r.existingSecret) }}
{{- fail "store.redis.urlKey and store.redis.passwordKey are keys of store.redis.existingSecret: set existingSecret to the name of your Secret" }}
{{- end }}
{{- if and $r.existingSecret (not (or $r.urlKey $r.passwordKey)) }}
{{- fail "store.redis.existingSecret is set but neither urlKey nor passwordKey names a key of it" }}
{{- end }}
{{- if and $t.caSecret $t.caConfigMap }}
{{- fail "store.redis.tls: give caSecret or caConfigMap, not both" }}
{{- end }}
{{- if and $r.url (hasPrefix "redis://" $r.url) (or $t.caSecret $t.caConfigMap $t.serverName) }}
{{- fail "store.redis.tls is set but store.redis.url is redis:// (no TLS): use a rediss:// URL" }}
{{- end }}
{{- else }}
{{- if or $r.url $r.existingSecret $r.urlKey $r.passwordKey $t.caSecret $t.caConfigMap $t.serverName }}
{{- fail "store.redis is set but store.type is memory: set store.type redis (or remove store.redis)" }}
{{- end }}
{{- if and (include "noreply-relay.multiplePods" .) (not $s.allowPerPodState) }}
{{- $n := ternary (int .Values.autoscaling.maxReplicas) (int .Values.replicaCount) (.Values.autoscaling.enabled | default false) }}
{{- $pods := ternary (printf "up to %d pods (autoscaling.maxReplicas)" $n) (printf "%d pods (replicaCount)" $n) (.Values.autoscaling.enabled | default false) }}
{{- fail (printf "store.type memory keeps delivery state in each pod, but this release runs %s: an Idempotency-Key replay that reaches another pod would send the mail again, and each sender mailbox would get up to %d x limits.maxConcurrency Graph requests and %d x limits.recipientsPerDay recipients. Set store.type redis (see docs/helm-redis.md), or replicaCount 1 with autoscaling.enabled false, or store.allowPerPodState true to accept per-pod state" $pods $n $n) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The metrics values: a token needs its Secret, and the separate port must not be the API port
(the service would fail to listen twice on it). With the ServiceMonitor in another namespace,
the Prometheus Operator cannot read the token Secret from the release namespace.
*/}}
{{- define "noreply-relay.validateMetrics" -}}
{{- $m := .Values.metrics | default dict }}
{{- $t := $m.token | default dict }}
{{- $sm := .Values.serviceMonitor }}
{{- $smSecret := $sm.tokenSecret | default dict }}
{{- if and $t.enabled (not $t.existingSecret) }}
{{- fail "metrics.token.enabled is true but metrics.token.existingSecret is empty: create a Secret holding the token (kubectl create secret generic <name> --from-literal=token=...) and name it there" }}
{{- end }}
{{- if and $t.existingSecret (not $t.enabled) }}
{{- fail "metrics.token.existingSecret is set but metrics.token.enabled is false: /metrics would stay open; set enabled true (or remove existingSecret)" }}
{{- end }}
{{- with include "noreply-relay.metricsPort" . }}
{{- if eq (. | int) (include "noreply-relay.apiPort" $ | int) }}
{{- fail (printf "metrics.port (%s) must differ from the API port (%s): give /metrics a port of its own, or null to keep it on the API port" . (include "noreply-relay.apiPort" $)) }}
{{- end }}
{{- end }}
{{- if and (or $smSecret.name $smSecret.key) (not $t.enabled) }}
{{- fail "serviceMonitor.tokenSecret is set but metrics.token.enabled is false" }}
{{- end }}
{{- if and $smSecret.key (not $smSecret.name) }}
{{- fail "serviceMonitor.tokenSecret.key is set without serviceMonitor.tokenSecret.name" }}
{{- end }}
{{- if and $sm.enabled $t.enabled $sm.namespace (ne $sm.namespace .Release.Namespace) (not $smSecret.name) }}
{{- fail (printf "serviceMonitor.namespace is %s but the metrics token Secret %s is in %s: the Prometheus Operator reads it from the ServiceMonitor's namespace. Copy the token into a Secret in %s and set serviceMonitor.tokenSecret.name (and .key)" $sm.namespace $t.existingSecret .Release.Namespace $sm.namespace) }}
{{- end }}
{{- end }}

{{/* The Secret (name, key) the ServiceMonitor hands Prometheus for the metrics token. */}}
{{- define "noreply-relay.serviceMonitorTokenSecret" -}}
{{- $t := .Values.metrics.token }}
{{- $s := .Values.serviceMonitor.tokenSecret | default dict }}
{{- toYaml (dict "name" ($s.name | default $t.existingSecret) "key" ($s.key | default $t.key)) }}
{{- end }}

{{/* The SMTP door (values smtp): where its TLS Secret is mounted, and its config section. */}}
{{- define "noreply-relay.smtpTlsDir" -}}/var/run/secrets/noreply-relay/smtp-tls{{- end }}
{{- define "noreply-relay.smtpEnabled" -}}
{{- if (.Values.smtp | default dict).enabled }}true{{ end }}
{{- end }}
{{- define "noreply-relay.smtpConfig" -}}
{{- $s := .Values.smtp }}
{{- if not $s.tls.secretName }}
{{- fail "smtp.tls.secretName: SMTP needs a kubernetes.io/tls Secret (tls.crt, tls.key): AUTH is refused without TLS" }}
{{- end }}
{{- $dir := include "noreply-relay.smtpTlsDir" . }}
{{- $out := deepCopy ($s.config | default dict) }}
{{- $_ := set $out "enabled" true }}
{{- $_ := set $out "port" 2587 }}
{{- if $s.service.implicitTlsPort }}
{{- $_ := set $out "implicitTlsPort" 2465 }}
{{- end }}
{{- $_ := set $out "tls" (dict "certFile" (printf "%s/tls.crt" $dir) "keyFile" (printf "%s/tls.key" $dir)) }}
{{- toYaml $out }}
{{- end }}

{{/*
extraEnv without NODE_OPTIONS, and NODE_OPTIONS: nodeOptions followed by the value of a
NODE_OPTIONS in extraEnv (later flags win in node), so a NODE_OPTIONS given the old way keeps
working and the young generation's flag stays unless it is overridden. As YAML:
{nodeOptions: string, extraEnv: list}.
*/}}
{{- define "noreply-relay.extraEnv" -}}
{{- $nodeOptions := .Values.nodeOptions | default "" }}
{{- $rest := list }}
{{- range .Values.extraEnv }}
{{- if eq .name "NODE_OPTIONS" }}
{{- if hasKey . "valueFrom" }}
{{- fail "extraEnv: NODE_OPTIONS from valueFrom cannot be joined with nodeOptions; put node's flags in nodeOptions" }}
{{- end }}
{{- $nodeOptions = trim (printf "%s %s" $nodeOptions (.value | default "" | toString)) }}
{{- else }}
{{- $rest = append $rest . }}
{{- end }}
{{- end }}
{{- dict "nodeOptions" $nodeOptions "extraEnv" $rest | toYaml }}
{{- end }}
