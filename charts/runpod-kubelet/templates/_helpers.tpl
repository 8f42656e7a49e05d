{{/* Names. Everything is named after the release so two installs never collide. */}}
{{- define "runpod-kubelet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "runpod-kubelet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selectorLabels: pass (dict "ctx" $ "component" "binder") */}}
{{- define "runpod-kubelet.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Where the catalog ConfigMap and the leader Lease live. */}}
{{- define "runpod-kubelet.workNamespace" -}}
{{- .Values.kubelet.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "runpod-kubelet.binderName" -}}{{ include "runpod-kubelet.fullname" . }}-binder{{- end -}}
{{- define "runpod-kubelet.webhookName" -}}{{ include "runpod-kubelet.fullname" . }}-webhook{{- end -}}
{{- define "runpod-kubelet.sandboxName" -}}{{ include "runpod-kubelet.fullname" . }}-sandbox{{- end -}}
{{- define "runpod-kubelet.certsName" -}}{{ include "runpod-kubelet.fullname" . }}-certs{{- end -}}

{{- define "runpod-kubelet.certsSecret" -}}
{{- .Values.certs.secretName | default (printf "%s-webhook-tls" (include "runpod-kubelet.fullname" .)) -}}
{{- end -}}

{{/* The binder's SSH key pair for RunPod pods (kubectl exec): created by the binder, in the
     release namespace, removed by the uninstall hook. */}}
{{- define "runpod-kubelet.sshSecret" -}}
{{- printf "%s-ssh" (include "runpod-kubelet.fullname" .) -}}
{{- end -}}

{{- define "runpod-kubelet.apiKeySecret" -}}
{{- .Values.runpod.existingSecret | default (printf "%s-runpod" (include "runpod-kubelet.fullname" .)) -}}
{{- end -}}

{{/* The RunPod API the binder talks to: the in-cluster sandbox when it is enabled. */}}
{{- define "runpod-kubelet.runpodBaseUrl" -}}
{{- if .Values.sandbox.enabled -}}
{{- printf "http://%s.%s.svc:%v" (include "runpod-kubelet.sandboxName" .) .Release.Namespace .Values.sandbox.port -}}
{{- else -}}
{{- .Values.runpod.baseUrl -}}
{{- end -}}
{{- end -}}

{{/* The key the chart's Secret holds: runpod.apiKey, or a fixed one for the sandbox. */}}
{{- define "runpod-kubelet.apiKey" -}}
{{- if .Values.runpod.apiKey -}}
{{- .Values.runpod.apiKey -}}
{{- else if .Values.sandbox.enabled -}}
sandbox
{{- end -}}
{{- end -}}

{{- define "runpod-kubelet.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Both webhook configurations carry this name (the kinds differ). */}}
{{- define "runpod-kubelet.webhookConfigName" -}}{{ include "runpod-kubelet.fullname" . }}{{- end -}}

{{/* Namespaces the webhooks skip: the release's own (no self-hosting deadlock), kube-system,
     the work namespace and any extra. Unique, in a stable order. */}}
{{- define "runpod-kubelet.excludedNamespaces" -}}
{{- $list := list .Release.Namespace "kube-system" (include "runpod-kubelet.workNamespace" .) -}}
{{- $list = concat $list .Values.webhook.excludedNamespaces | uniq -}}
{{- toJson $list -}}
{{- end -}}

{{/* The CEL condition "this pod is aimed at the virtual node": it tolerates the node's taint
     key, selects the node by label or hostname, or names it. Mirrors contract.policy.pod_targets_node. */}}
{{- define "runpod-kubelet.targetsNodeExpression" -}}
{{- $node := .Values.kubelet.nodeName -}}
(has(object.spec.tolerations) && object.spec.tolerations.exists(t, has(t.key) && t.key == 'virtual-kubelet.io/provider')) ||
(has(object.spec.nodeSelector) && (('type' in object.spec.nodeSelector && object.spec.nodeSelector['type'] == 'virtual-kubelet') || ('kubernetes.io/hostname' in object.spec.nodeSelector && object.spec.nodeSelector['kubernetes.io/hostname'] == '{{ $node }}'))) ||
(has(object.spec.nodeName) && object.spec.nodeName == '{{ $node }}')
{{- end -}}

{{/* Settings both processes share (contract.settings.NodeSettings). */}}
{{- define "runpod-kubelet.sharedEnv" -}}
- name: NODE_NAME
  value: {{ .Values.kubelet.nodeName | quote }}
- name: NAMESPACE
  value: {{ include "runpod-kubelet.workNamespace" . | quote }}
- name: MAX_GPU_PRICE
  value: {{ .Values.kubelet.maxGpuPrice | toString | quote }}
- name: MAX_VCPU_PRICE
  value: {{ .Values.kubelet.maxVcpuPrice | toString | quote }}
- name: DEFAULT_COMPUTE_TYPE
  value: {{ .Values.kubelet.defaultComputeType | quote }}
- name: DATACENTER_IDS
  value: {{ join "," .Values.kubelet.datacenterIds | quote }}
- name: MAX_CANDIDATES
  value: {{ .Values.kubelet.maxCandidates | toString | quote }}
- name: LOG_LEVEL
  value: {{ .Values.kubelet.logLevel | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end -}}

{{- define "runpod-kubelet.podSecurity" -}}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* The cert tool's permissions, shared by the hook Jobs and the renewal CronJob: get/update
     on the two webhook configurations by name (cluster-scoped objects, hence a ClusterRole) ... */}}
{{- define "runpod-kubelet.certsClusterRules" -}}
- apiGroups: [admissionregistration.k8s.io]
  resources: [mutatingwebhookconfigurations, validatingwebhookconfigurations]
  resourceNames: [{{ include "runpod-kubelet.webhookConfigName" . | quote }}]
  verbs: [get, update]
{{- end -}}

{{/* ... and Secrets in the release namespace only (a Role). `create` cannot be limited by
     resourceNames; get/update are limited to the one Secret. */}}
{{- define "runpod-kubelet.certsNamespacedRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ include "runpod-kubelet.certsSecret" . | quote }}]
  verbs: [get, update]
{{- end -}}

{{/* The certs container. Pass (dict "ctx" $ "configs" true/false "allowMissing" true/false). */}}
{{- define "runpod-kubelet.certsContainer" -}}
{{- $ := .ctx -}}
- name: certs
  image: {{ include "runpod-kubelet.image" $ }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  args:
    - certs
    - ensure
    - --namespace={{ $.Release.Namespace }}
    - --secret-name={{ include "runpod-kubelet.certsSecret" $ }}
    - --service={{ include "runpod-kubelet.webhookName" $ }}
    - --cluster-domain={{ $.Values.certs.clusterDomain }}
    {{- if .configs }}
    - --webhook-config-names={{ include "runpod-kubelet.webhookConfigName" $ }}
    {{- end }}
    {{- if .allowMissing }}
    - --allow-missing-configs
    {{- end }}
  env:
    - name: LOG_LEVEL
      value: {{ $.Values.kubelet.logLevel | quote }}
  {{- with $.Values.certs.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
