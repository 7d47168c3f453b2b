{{/*
Names, labels and the pieces every workload shares. The recorder's container and its volumes are
defined once (ractogateway-kafka.container, ractogateway-kafka.volumes); the standalone pods, the
sidecar mode and a parent chart's own workload (ractogateway-kafka.sidecar) all render them.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "ractogateway-kafka.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* `<release>-<name>` (just the release when it already contains the name), or fullnameOverride;
63 characters at most, the limit of a DNS label. */}}
{{- define "ractogateway-kafka.fullname" -}}
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

{{/* `<chart>-<version>` for the helm.sh/chart label. */}}
{{- define "ractogateway-kafka.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels every resource carries. */}}
{{- define "ractogateway-kafka.labels" -}}
helm.sh/chart: {{ include "ractogateway-kafka.chart" . }}
{{ include "ractogateway-kafka.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The labels a workload selects its pods by (never change them: selectors are immutable). */}}
{{- define "ractogateway-kafka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ractogateway-kafka.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The recorder's image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "ractogateway-kafka.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The ConfigMap of RG_* settings and the Secret of inline values. */}}
{{- define "ractogateway-kafka.configName" -}}
{{- include "ractogateway-kafka.fullname" . }}
{{- end }}
{{- define "ractogateway-kafka.inlineSecretName" -}}
{{- printf "%s-inline" (include "ractogateway-kafka.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Where the recorder keeps its state (the spool, temporary files) and finds its secret files. */}}
{{- define "ractogateway-kafka.stateDir" -}}/var/lib/ractogateway-kafka{{- end }}
{{- define "ractogateway-kafka.secretsDir" -}}/etc/ractogateway-kafka/secrets{{- end }}
{{- define "ractogateway-kafka.retiredKeysDir" -}}/etc/ractogateway-kafka/retired-keys{{- end }}

{{/*
The Secret a secret value comes from, given (dict "ref" <existingSecret/key/value> "root" $):
existingSecret, else the chart's inline Secret when a value is given, else empty (not set).
*/}}
{{- define "ractogateway-kafka.secretSource" -}}
{{- if .ref.existingSecret }}
{{- .ref.existingSecret }}
{{- else if .ref.value }}
{{- include "ractogateway-kafka.inlineSecretName" .root }}
{{- end }}
{{- end }}

{{/* The key a secret value has in the Secret it comes from: its own key in an existing Secret; in
the chart's inline Secret the name given here (the four share one Secret). */}}
{{- define "ractogateway-kafka.secretKey" -}}
{{- if .ref.existingSecret }}{{ .ref.key }}{{ else }}{{ .inlineKey }}{{ end }}
{{- end }}

{{/* True ("true") when any secret is given inline, so the chart renders its inline Secret. */}}
{{- define "ractogateway-kafka.hasInlineSecrets" -}}
{{- $v := .Values }}
{{- if or $v.kafka.sasl.password.value $v.schemaRegistry.password.value $v.auth.apiKeys.value $v.integrity.signingKey.value $v.redaction.key.value }}true{{ end }}
{{- end }}

{{/* Files the recorder reads from Secrets: (list <volume path> <Secret> <key>) entries. */}}
{{- define "ractogateway-kafka.secretFiles" -}}
{{- $files := list }}
{{- $tls := .Values.kafka.tls }}
{{- if $tls.existingSecret }}
{{- if $tls.caKey }}{{ $files = append $files (list "kafka-ca.crt" $tls.existingSecret $tls.caKey) }}{{ end }}
{{- if $tls.certKey }}{{ $files = append $files (list "kafka-client.crt" $tls.existingSecret $tls.certKey) }}{{ end }}
{{- if $tls.keyKey }}{{ $files = append $files (list "kafka-client.key" $tls.existingSecret $tls.keyKey) }}{{ end }}
{{- end }}
{{- $sign := .Values.integrity.signingKey }}
{{- with include "ractogateway-kafka.secretSource" (dict "ref" $sign "root" .) }}
{{- $files = append $files (list "signing-key.pem" . (include "ractogateway-kafka.secretKey" (dict "ref" $sign "inlineKey" "signing-key.pem"))) }}
{{- end }}
{{- $red := .Values.redaction.key }}
{{- with include "ractogateway-kafka.secretSource" (dict "ref" $red "root" .) }}
{{- $files = append $files (list "redaction.key" . (include "ractogateway-kafka.secretKey" (dict "ref" $red "inlineKey" "redaction.key"))) }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/* A quantity as written in values ("512Mi", "2Gi", "1T", a number of bytes): YAML numbers
arrive as floats, which would print as 2.147483648e+09. */}}
{{- define "ractogateway-kafka.quantity" -}}
{{- if kindIs "float64" . }}{{ int64 . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/* A quantity in bytes. */}}
{{- define "ractogateway-kafka.bytes" -}}
{{- $s := include "ractogateway-kafka.quantity" . }}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- $n := regexFind "^[0-9]+" $s }}
{{- $unit := trimPrefix $n $s }}
{{- if eq $unit "" }}{{ $n }}{{ else }}{{ mul (int64 $n) (get $units $unit) }}{{ end }}
{{- end }}

{{/* The least room the spool's volume needs: RG_SPOOL_MAX_BYTES + RG_SPOOL_MIN_FREE_BYTES. */}}
{{- define "ractogateway-kafka.spoolFloorBytes" -}}
{{- add (int64 .Values.spool.maxBytes) (int64 .Values.spool.minFreeBytes) }}
{{- end }}

{{/*
The size of the state volume (emptyDir sizeLimit or claim size): spool.sizeLimit, or else the
floor plus an eighth of RG_SPOOL_MAX_BYTES for SQLite's pages and WAL, in whole MiB. Without a
spool the volume holds temporary files only.
*/}}
{{- define "ractogateway-kafka.stateVolumeSize" -}}
{{- if not .Values.spool.enabled }}64Mi
{{- else if .Values.spool.sizeLimit }}{{ include "ractogateway-kafka.quantity" .Values.spool.sizeLimit }}
{{- else }}
{{- $bytes := add (include "ractogateway-kafka.spoolFloorBytes" . | int64) (div (int64 .Values.spool.maxBytes) 8) }}
{{- printf "%dMi" (add1 (div (sub $bytes 1) 1048576)) }}
{{- end }}
{{- end }}

{{/* True when the state volume is a claim per pod: the workload is then a StatefulSet. */}}
{{- define "ractogateway-kafka.claimPerPod" -}}
{{- $p := .Values.spool.persistence }}
{{- if and .Values.spool.enabled $p.enabled (not $p.existingClaim) }}true{{ end }}
{{- end }}

{{/*
The pod's grace period: the recorder's drain and shutdown timeout, 15 s for the producer's flush
and the spool's close, and before them the preStop sleep (standalone) or the app's own shutdown
(sidecar: a native sidecar is stopped only after the app exited, within the same grace period).
*/}}
{{- define "ractogateway-kafka.minGraceSeconds" -}}
{{- $s := .Values.shutdown }}
{{- $recorder := add (ceil (addf $s.drainSeconds $s.timeoutSeconds) | int64) 15 }}
{{- if eq .Values.mode "sidecar" }}{{ add $recorder (int64 .Values.app.shutdownSeconds) }}
{{- else }}{{ add $recorder (int64 $s.preStopSleepSeconds) }}{{ end }}
{{- end }}
{{- define "ractogateway-kafka.graceSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}{{ include "ractogateway-kafka.minGraceSeconds" . }}
{{- else }}{{ int64 .Values.terminationGracePeriodSeconds }}{{ end }}
{{- end }}

{{/* Values that cannot work together fail the install here, naming the values. */}}
{{- define "ractogateway-kafka.validate" -}}
{{- $v := .Values }}
{{- range $name, $ref := dict "kafka.sasl.password" $v.kafka.sasl.password "schemaRegistry.password" $v.schemaRegistry.password "auth.apiKeys" $v.auth.apiKeys "integrity.signingKey" $v.integrity.signingKey "redaction.key" $v.redaction.key }}
{{- if and $ref.existingSecret $ref.value }}
{{- fail (printf "%s: give existingSecret or value, not both" $name) }}
{{- end }}
{{- end }}
{{- if and (eq $v.mode "standalone") (not $v.auth.allowUnauthenticated) (not (include "ractogateway-kafka.secretSource" (dict "ref" $v.auth.apiKeys "root" .))) }}
{{- fail "mode standalone serves on every interface of the pod: set auth.apiKeys.existingSecret (or .value), or auth.allowUnauthenticated true to let anyone in reach write and read" }}
{{- end }}
{{- if and (eq $v.redaction.mode "hash") (not (include "ractogateway-kafka.secretSource" (dict "ref" $v.redaction.key "root" .))) }}
{{- fail "redaction.mode hash needs the HMAC key: redaction.key.existingSecret (or .value)" }}
{{- end }}
{{- if and (hasPrefix "SASL_" $v.kafka.securityProtocol) (not $v.kafka.sasl.mechanism) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism" $v.kafka.securityProtocol) }}
{{- end }}
{{- if and (eq $v.mode "sidecar") (not $v.app.image.repository) }}
{{- fail "mode sidecar deploys your app with the recorder beside it: set app.image.repository" }}
{{- end }}
{{- if and (ne $v.mode "standalone") (not (semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version)) }}
{{- fail (printf "mode %s uses native sidecars (Kubernetes >= 1.29); this cluster is %s: see the classic two-container form in docs/deploy.md" $v.mode .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- $p := $v.spool.persistence }}
{{- if and $v.spool.enabled $p.enabled $p.existingClaim (gt (int64 $v.replicaCount) 1) }}
{{- fail (printf "spool.persistence.existingClaim: one spool folder serves one process, and replicaCount is %d; leave existingClaim empty to get a claim per pod (a StatefulSet), or set replicaCount 1" (int64 $v.replicaCount)) }}
{{- end }}
{{- if and $v.spool.enabled $v.spool.sizeLimit }}
{{- $floor := include "ractogateway-kafka.spoolFloorBytes" . | int64 }}
{{- if lt (include "ractogateway-kafka.bytes" $v.spool.sizeLimit | int64) $floor }}
{{- fail (printf "spool.sizeLimit %s is below spool.maxBytes + spool.minFreeBytes (%d bytes): the pod would be evicted before the spool refuses" (include "ractogateway-kafka.quantity" $v.spool.sizeLimit) $floor) }}
{{- end }}
{{- end }}
{{- if not (kindIs "invalid" $v.terminationGracePeriodSeconds) }}
{{- $min := include "ractogateway-kafka.minGraceSeconds" . | int64 }}
{{- if lt (int64 $v.terminationGracePeriodSeconds) $min }}
{{- fail (printf "terminationGracePeriodSeconds %d is below %d, what shutdown.* (and app.shutdownSeconds in sidecar mode) need: events in flight would be killed" (int64 $v.terminationGracePeriodSeconds) $min) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One probe of the recorder. Standalone: httpGet on the named port (the kubelet reaches 0.0.0.0
through the pod's IP). Sidecar: the recorder listens on 127.0.0.1, which the kubelet's httpGet
(sent to the pod's IP) cannot reach, so `ractogateway-kafka probe live|ready` runs inside.
(dict "root" $ "sidecar" bool "check" "live"|"ready")
*/}}
{{- define "ractogateway-kafka.probe" -}}
{{- if .sidecar }}
exec:
  command: ["ractogateway-kafka", "probe", {{ .check | quote }}]
{{- else }}
httpGet:
  path: {{ ternary "/readyz" "/healthz" (eq .check "ready") }}
  port: http
{{- end }}
{{- end }}

{{/*
The recorder's container, as a list item. (dict "root" $ "sidecar" bool): as a sidecar it is a
native sidecar (restartPolicy Always, for initContainers) on 127.0.0.1 with exec probes.
*/}}
{{- define "ractogateway-kafka.container" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $sidecar := .sidecar }}
- name: ractogateway-kafka
  image: {{ include "ractogateway-kafka.image" $root | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if $sidecar }}
  # A native sidecar: started before the app's containers, stopped after them.
  restartPolicy: Always
  {{- end }}
  command: ["ractogateway-kafka", "serve"]
  {{- if and (not $sidecar) $v.shutdown.preStopSleepSeconds }}
  lifecycle:
    # Keeps serving while the Service's endpoints drop this pod; SIGTERM comes after.
    preStop:
      exec:
        command: ["sleep", {{ int64 $v.shutdown.preStopSleepSeconds | toString | quote }}]
  {{- end }}
  {{- if not $sidecar }}
  ports:
    - name: http
      containerPort: {{ $v.port }}
      protocol: TCP
  {{- end }}
  env:
    - name: RG_HOST
      value: {{ ternary "127.0.0.1" "0.0.0.0" $sidecar | quote }}
    - name: RG_PORT
      value: {{ $v.port | quote }}
    {{- if and (not $sidecar) $v.auth.allowUnauthenticated }}
    - name: RG_ALLOW_UNAUTHENTICATED
      value: "true"
    {{- end }}
    {{- with include "ractogateway-kafka.secretSource" (dict "ref" $v.kafka.sasl.password "root" $root) }}
    - name: RG_KAFKA_SASL_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ include "ractogateway-kafka.secretKey" (dict "ref" $v.kafka.sasl.password "inlineKey" "kafka-sasl-password") }}
    {{- end }}
    {{- with include "ractogateway-kafka.secretSource" (dict "ref" $v.schemaRegistry.password "root" $root) }}
    - name: RG_SCHEMA_REGISTRY_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ include "ractogateway-kafka.secretKey" (dict "ref" $v.schemaRegistry.password "inlineKey" "schema-registry-password") }}
    {{- end }}
    {{- with include "ractogateway-kafka.secretSource" (dict "ref" $v.auth.apiKeys "root" $root) }}
    - name: RG_API_KEYS
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ include "ractogateway-kafka.secretKey" (dict "ref" $v.auth.apiKeys "inlineKey" "api-keys") }}
    {{- end }}
  envFrom:
    - configMapRef:
        name: {{ include "ractogateway-kafka.configName" $root }}
  volumeMounts:
    - name: ractogateway-kafka-state
      mountPath: {{ include "ractogateway-kafka.stateDir" $root }}
    {{- if ne (include "ractogateway-kafka.secretFiles" $root) "[]" }}
    - name: ractogateway-kafka-secrets
      mountPath: {{ include "ractogateway-kafka.secretsDir" $root }}
      readOnly: true
    {{- end }}
    {{- if $v.integrity.retiredKeys.configMap }}
    - name: ractogateway-kafka-retired-keys
      mountPath: {{ include "ractogateway-kafka.retiredKeysDir" $root }}
      readOnly: true
    {{- end }}
  startupProbe:
    {{- include "ractogateway-kafka.probe" (dict "sidecar" $sidecar "check" (ternary "ready" "live" (and $sidecar (eq $v.probes.readiness "ready")))) | trim | nindent 4 }}
    periodSeconds: 1
    timeoutSeconds: {{ $v.probes.timeoutSeconds }}
    failureThreshold: {{ $v.probes.startupFailureThreshold }}
  livenessProbe:
    {{- include "ractogateway-kafka.probe" (dict "sidecar" $sidecar "check" "live") | trim | nindent 4 }}
    periodSeconds: {{ $v.probes.periodSeconds }}
    timeoutSeconds: {{ $v.probes.timeoutSeconds }}
    failureThreshold: 3
  readinessProbe:
    {{- include "ractogateway-kafka.probe" (dict "sidecar" $sidecar "check" $v.probes.readiness) | trim | nindent 4 }}
    periodSeconds: {{ $v.probes.periodSeconds }}
    timeoutSeconds: {{ $v.probes.timeoutSeconds }}
    failureThreshold: 3
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
{{- end }}

{{/*
The recorder's volumes, as list items: its state (the spool and temporary files; an emptyDir,
or an existing claim; a claim per pod comes from the StatefulSet's volumeClaimTemplates instead)
and the files it reads from Secrets. (dict "root" $)
*/}}
{{- define "ractogateway-kafka.volumes" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $p := $v.spool.persistence }}
{{- if not (include "ractogateway-kafka.claimPerPod" $root) }}
- name: ractogateway-kafka-state
  {{- if and $v.spool.enabled $p.enabled $p.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ $p.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ include "ractogateway-kafka.stateVolumeSize" $root | quote }}
  {{- end }}
{{- end }}
{{- $files := include "ractogateway-kafka.secretFiles" $root | fromJsonArray }}
{{- if $files }}
- name: ractogateway-kafka-secrets
  projected:
    # Readable by the pod's fsGroup (the recorder's group), by nobody else.
    defaultMode: 0440
    sources:
      {{- range $files }}
      - secret:
          name: {{ index . 1 }}
          items:
            - key: {{ index . 2 }}
              path: {{ index . 0 }}
      {{- end }}
{{- end }}
{{- with $v.integrity.retiredKeys.configMap }}
- name: ractogateway-kafka-retired-keys
  configMap:
    name: {{ . }}
{{- end }}
{{- end }}

{{/*
For a parent chart that has this chart as a dependency (mode: include): the recorder as a native
sidecar, to put under the parent's pod `initContainers:`, and its volumes, under `volumes:`.
Pass this chart's scope so names and values are this chart's:
  initContainers:
    {{- include "ractogateway-kafka.sidecar" (index .Subcharts "ractogateway-kafka") | nindent 8 }}
  volumes:
    {{- include "ractogateway-kafka.sidecarVolumes" (index .Subcharts "ractogateway-kafka") | nindent 8 }}
The pod needs an fsGroup (10001 is the recorder's group) to read the secret files, and a grace
period covering the app's shutdown plus the recorder's (docs/deploy.md).
*/}}
{{- define "ractogateway-kafka.sidecar" -}}
{{- include "ractogateway-kafka.validate" . }}
{{- include "ractogateway-kafka.container" (dict "root" . "sidecar" true) | trim }}
{{- end }}
{{- define "ractogateway-kafka.sidecarVolumes" -}}
{{- include "ractogateway-kafka.volumes" (dict "root" .) | trim }}
{{- end }}

{{/* The pod template, shared by the standalone recorder and the sidecar mode's app. */}}
{{- define "ractogateway-kafka.podTemplate" -}}
{{- $v := .Values }}
{{- $sidecar := eq $v.mode "sidecar" }}
metadata:
  labels:
    {{- include "ractogateway-kafka.labels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A change of settings or inline secrets rolls the pods.
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if include "ractogateway-kafka.hasInlineSecrets" . }}
    checksum/inline-secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  automountServiceAccountToken: {{ $v.automountServiceAccountToken }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  terminationGracePeriodSeconds: {{ include "ractogateway-kafka.graceSeconds" . }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  {{- if $sidecar }}
  initContainers:
    {{- include "ractogateway-kafka.container" (dict "root" . "sidecar" true) | trim | nindent 4 }}
  containers:
    - name: {{ $v.app.name }}
      image: {{ printf "%s:%s" $v.app.image.repository (toString $v.app.image.tag) | quote }}
      imagePullPolicy: {{ $v.app.image.pullPolicy }}
      {{- with $v.app.command }}
      command:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.app.args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.app.ports }}
      ports:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        # Where the app sends its audit events: the recorder beside it.
        - name: RG_URL
          value: {{ printf "http://127.0.0.1:%d" (int64 $v.port) | quote }}
        {{- with $v.app.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.app.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.app.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.app.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.app.securityContext | nindent 8 }}
  {{- else }}
  containers:
    {{- include "ractogateway-kafka.container" (dict "root" . "sidecar" false) | trim | nindent 4 }}
  {{- end }}
  {{- with include "ractogateway-kafka.volumes" (dict "root" .) | trim }}
  volumes:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
