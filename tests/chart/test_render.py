"""The chart as `helm lint` and `helm template` (the real helm) see it, validated against k8s 1.37."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from binder.settings import load_binder_settings
from contract.policy import NODE_TYPE_LABEL, NODE_TYPE_VALUE, TAINT_EFFECT, TAINT_KEY, TAINT_VALUE
from tests.chart.rendering import CHART, RELEASE_NAMESPACE, Render, env_of, find, helm_template
from webhook.admission_policy import render_admission_policy
from webhook.cli import load_webhook_settings
from webhook.configurations import render_webhook_configurations

K8S_VERSION = "1.37.0"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}

VALUE_MATRIX: dict[str, tuple[str, ...]] = {
    "defaults": (),
    "api key": ("runpod.apiKey=x",),
    "existing secret": ("runpod.existingSecret=my-runpod-key",),
    "seed values": (
        "runpod.apiKey=x",
        "kubelet.reconcileInterval=45",
        "kubelet.maxGpuPrice=0.8",
        "kubelet.namespace=kube-system",
        'resources={"requests":{"cpu":"200m","memory":"256Mi"},"limits":{"cpu":"1","memory":"1Gi"}}',
    ),
    "every knob": (
        "runpod.apiKey=x",
        "runpod.baseUrl=http://sandbox.runpod:8000",
        "kubelet.nodeName=gpu-cloud",
        'kubelet.datacenterIds=["EU-RO-1","US-KS-2"]',
        "kubelet.maxSpendPerHour=12.5",
        "kubelet.gpuBudget=16",
        "kubelet.cpuBudget=24",
        "kubelet.maxVcpuPrice=0.07",
        "kubelet.defaultComputeType=GPU",
        "kubelet.maxCandidates=8",
        "kubelet.kubeletPort=10260",
        "kubelet.logLevel=debug",
        "kubelet.clusterId=prod-eu",
        "webhook.failurePolicy=Ignore",
        "webhook.timeoutSeconds=5",
        'webhook.excludedNamespaces=["monitoring"]',
        "webhook.validateUpdates=true",
        "webhook.outageTolerationSeconds=3600",
        "webhook.apiserverDefaultTolerationSeconds=60",
        "certs.renewSchedule=",
        "binder.replicas=3",
        'imagePullSecrets=[{"name":"ghcr"}]',
        'webhook.tolerations=[{"key":"dedicated","operator":"Exists"}]',
        'binder.resources={"requests":{"cpu":"50m","memory":"96Mi"}}',
        "image.tag=1.2.3",
        "priorityClassName=system-cluster-critical",
    ),
    "sandbox": (
        "sandbox.enabled=true",
        'sandbox.scenario={"timings":{"provisioningS":0.1}}',
        "sandbox.seed=3",
    ),
}


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            specs[doc["metadata"]["name"]] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def test_helm_lint_is_clean(helm: Path) -> None:
    for values in ([], ["--set", "runpod.apiKey=x"]):
        result = subprocess.run(
            [str(helm), "lint", "--strict", str(CHART), *values], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("values", VALUE_MATRIX.values(), ids=VALUE_MATRIX.keys())
def test_every_rendered_manifest_passes_strict_kubernetes_validation(
    render: Render, values: tuple[str, ...]
) -> None:
    docs = render(*values)

    assert len(docs) > 20
    for doc in docs:
        # Raises ValidationError naming the field on an unknown or mistyped property.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("kubelet.maxGpuPrice=cheap", "/kubelet/maxGpuPrice"),
        ("kubelet.maxGpuPrice=true", "/kubelet/maxGpuPrice"),
        ("kubelet.reconcileInterval=-5", "/kubelet/reconcileInterval"),
        ("kubelet.gpuBudget=many", "/kubelet/gpuBudget"),
        ("kubelet.cpuBudget=-1", "/kubelet/cpuBudget"),
        ("kubelet.maxVcpuPrice=free", "/kubelet/maxVcpuPrice"),
        ("kubelet.defaultComputeType=TPU", "/kubelet/defaultComputeType"),
        ("kubelet.kubeletPort=70000", "/kubelet/kubeletPort"),
        ("kubelet.logLevel=loud", "/kubelet/logLevel"),
        ("kubelet.datacenterIds=EU-RO-1", "/kubelet/datacenterIds"),
        ("kubelet.maxGpuPrise=0.5", "/kubelet"),
        ("webhook.failurePolicy=Sometimes", "/webhook/failurePolicy"),
        ("webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"),
        ("webhook.validateUpdates=maybe", "/webhook/validateUpdates"),
        ("webhook.outageTolerationSeconds=forever", "/webhook/outageTolerationSeconds"),
        ("webhook.outageTolerationSeconds=-1", "/webhook/outageTolerationSeconds"),
        ("binder.replicas=two", "/binder/replicas"),
        ("runpod.apiKey=1234", "/runpod/apiKey"),
    ],
)
def test_values_of_the_wrong_type_are_rejected_naming_the_value(helm: Path, value: str, path: str) -> None:
    result = helm_template(helm, values=[value])

    assert result.returncode != 0
    assert path in result.stderr


def test_an_api_key_value_becomes_a_chart_owned_secret_the_binder_reads(render: Render) -> None:
    docs = render("runpod.apiKey=rp_live_key")
    secret = find(docs, "Secret", "-runpod")
    binder = find(docs, "Deployment", "-binder")["spec"]["template"]["spec"]["containers"][0]

    assert secret["stringData"] == {"RUNPOD_API_KEY": "rp_live_key"}
    assert env_of(binder)["RUNPOD_API_KEY"] == {
        "secretKeyRef": {"name": secret["metadata"]["name"], "key": "RUNPOD_API_KEY"}
    }


def test_an_existing_secret_is_used_as_is_and_no_key_secret_is_rendered(render: Render) -> None:
    docs = render("runpod.existingSecret=my-runpod-key", "runpod.apiKey=ignored")
    binder = find(docs, "Deployment", "-binder")["spec"]["template"]["spec"]["containers"][0]

    assert not [d for d in docs if d["kind"] == "Secret"]
    assert env_of(binder)["RUNPOD_API_KEY"]["secretKeyRef"] == {
        "name": "my-runpod-key",
        "key": "RUNPOD_API_KEY",
    }


def container_env_for_settings(container: dict[str, Any]) -> dict[str, str]:
    """The env a container would see, with downward-API and Secret refs given sample values."""
    samples = {"POD_NAME": "rk-binder-abc", "POD_NAMESPACE": RELEASE_NAMESPACE, "POD_IP": "10.1.2.3"}
    env: dict[str, str] = {}
    for item in container["env"]:
        env[item["name"]] = item["value"] if "value" in item else samples.get(item["name"], "from-secret")
    return env


def test_the_seed_values_reach_both_processes_settings(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(*VALUE_MATRIX["seed values"])
    binder_ctr = find(docs, "Deployment", "-binder")["spec"]["template"]["spec"]["containers"][0]
    webhook_ctr = find(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]

    for key, value in container_env_for_settings(binder_ctr).items():
        monkeypatch.setenv(key, value)
    binder = load_binder_settings([])
    assert (binder.node_name, binder.namespace, binder.max_gpu_price) == (
        "virtual-runpod",
        "kube-system",
        0.8,
    )
    assert binder.reconcile_interval == 45
    assert binder.identity == "rk-binder-abc" and binder.node_address == "10.1.2.3"
    assert binder.runpod_api_key.get_secret_value() == "from-secret"
    expected_resources = {
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert binder_ctr["resources"] == expected_resources
    assert webhook_ctr["resources"] == expected_resources

    monkeypatch.delenv("RUNPOD_API_KEY")
    for key, value in container_env_for_settings(webhook_ctr).items():
        monkeypatch.setenv(key, value)
    webhook = load_webhook_settings([])
    assert (webhook.node_name, webhook.namespace, webhook.max_gpu_price) == (
        "virtual-runpod",
        "kube-system",
        0.8,
    )
    assert webhook.tls_cert_file == "/etc/runpod-kubelet/tls/tls.crt"
    assert webhook.outage_toleration_seconds == 86400
    assert webhook.apiserver_default_toleration_seconds == 300


def test_every_binder_and_webhook_knob_reaches_the_settings(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(*VALUE_MATRIX["every knob"])
    binder_ctr = find(docs, "Deployment", "-binder")["spec"]["template"]["spec"]["containers"][0]
    webhook_ctr = find(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]

    for key, value in container_env_for_settings(binder_ctr).items():
        monkeypatch.setenv(key, value)
    binder = load_binder_settings([])
    assert binder.node_name == "gpu-cloud"
    assert binder.datacenter_ids == "EU-RO-1,US-KS-2"
    assert binder.max_spend_per_hour == 12.5
    assert binder.gpu_budget == 16
    assert (binder.cpu_budget, binder.max_vcpu_price) == (24, 0.07)
    assert binder.max_candidates == 8
    assert binder.kubelet_port == 10260
    assert binder.log_level == "debug"
    assert binder.cluster_id == "prod-eu"
    assert binder.runpod_base_url == "http://sandbox.runpod:8000"
    assert binder_ctr["resources"] == {"requests": {"cpu": "50m", "memory": "96Mi"}}

    for key in container_env_for_settings(binder_ctr):
        monkeypatch.delenv(key)
    for key, value in container_env_for_settings(webhook_ctr).items():
        monkeypatch.setenv(key, value)
    webhook = load_webhook_settings([])
    assert webhook.node_policy().allowed_datacenter_ids == ("EU-RO-1", "US-KS-2")
    assert (webhook.node_name, webhook.max_candidates, webhook.port) == ("gpu-cloud", 8, 8443)
    assert webhook.outage_toleration_seconds == 3600
    assert webhook.apiserver_default_toleration_seconds == 60
    assert webhook.node_policy().max_vcpu_price == 0.07
    assert webhook.node_policy().default_compute_type == "GPU"


def test_an_unlimited_outage_toleration_reaches_the_webhook_as_no_limit(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render("webhook.outageTolerationSeconds=unlimited")
    webhook_ctr = find(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]

    for key, value in container_env_for_settings(webhook_ctr).items():
        monkeypatch.setenv(key, value)
    assert load_webhook_settings([]).outage_toleration_seconds is None


@pytest.mark.parametrize(
    ("values", "operations"), [((), ["CREATE"]), (("webhook.validateUpdates=true",), ["CREATE", "UPDATE"])]
)
def test_the_validating_webhook_sees_updates_only_when_asked(
    render: Render, values: tuple[str, ...], operations: list[str]
) -> None:
    config = find(render(*values), "ValidatingWebhookConfiguration")
    mutating = find(render(*values), "MutatingWebhookConfiguration")

    assert [rule["operations"] for rule in config["webhooks"][0]["rules"]] == [operations]
    assert [rule["operations"] for rule in mutating["webhooks"][0]["rules"]] == [["CREATE"]]


def test_no_role_can_write_secrets_cluster_wide(render: Render) -> None:
    docs = render("runpod.apiKey=x")
    cluster_roles = [d for d in docs if d["kind"] == "ClusterRole"]

    assert len(cluster_roles) >= 3
    for role in cluster_roles:
        for rule in role["rules"]:
            assert "*" not in rule["resources"] and "*" not in rule.get("apiGroups", [])
            if "secrets" in rule["resources"]:
                assert not WRITE_VERBS & set(rule["verbs"]), (role["metadata"]["name"], rule)
    # Secret writes exist only for the cert tool, the binder creating its SSH key pair (create
    # only) and the uninstall hook deleting both by name, namespaced to the release namespace.
    for role in (d for d in docs if d["kind"] == "Role"):
        for rule in role["rules"]:
            if "secrets" in rule["resources"] and WRITE_VERBS & set(rule["verbs"]):
                assert role["metadata"]["name"].endswith(
                    ("-certs", "-certs-hook", "-uninstall", "-binder-ssh")
                )
                assert role["metadata"]["namespace"] == RELEASE_NAMESPACE
    ssh = find(docs, "Role", "-binder-ssh")
    assert ssh["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]


def test_the_binder_reads_secrets_and_configmaps_by_get_only(render: Render) -> None:
    role = find(render(), "ClusterRole", "-binder")
    reading = [r for r in role["rules"] if "secrets" in r["resources"]]

    assert reading == [{"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get"]}]


def test_pods_run_non_root_on_a_read_only_root_with_requests_and_the_downward_api(render: Render) -> None:
    docs = render("runpod.apiKey=x", "sandbox.enabled=true")
    specs = pod_specs(docs)

    # binder, webhook, sandbox, two cert hook Jobs, renewal CronJob, two uninstall hook Jobs
    assert len(specs) == 8
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["resources"]["requests"], name
    for suffix in ("-binder", "-webhook"):
        env = env_of(find(docs, "Deployment", suffix)["spec"]["template"]["spec"]["containers"][0])
        assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_both_processes_run_two_replicas_and_the_webhook_has_a_disruption_budget(render: Render) -> None:
    docs = render()
    webhook = find(docs, "Deployment", "-webhook")
    pdb = find(docs, "PodDisruptionBudget", "-webhook")

    assert find(docs, "Deployment", "-binder")["spec"]["replicas"] == 2
    assert webhook["spec"]["replicas"] == 2
    assert pdb["spec"]["selector"]["matchLabels"] == webhook["spec"]["selector"]["matchLabels"]
    probe = webhook["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["scheme"]) == ("/readyz", "HTTPS")


def test_webhook_configurations_reach_the_service_and_skip_unrelated_namespaces(render: Render) -> None:
    docs = render()
    service = find(docs, "Service", "-webhook")
    configs = [d for d in docs if d["kind"].endswith("WebhookConfiguration")]

    assert {c["kind"] for c in configs} == {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    paths = set()
    for config in configs:
        for webhook in config["webhooks"]:
            client = webhook["clientConfig"]
            assert "caBundle" not in client  # written by `certs ensure`, kept by Helm on upgrade
            assert client["service"]["name"] == service["metadata"]["name"]
            assert client["service"]["namespace"] == RELEASE_NAMESPACE
            assert client["service"]["port"] == service["spec"]["ports"][0]["port"]
            assert webhook["failurePolicy"] == "Fail"
            assert webhook["sideEffects"] == "None"
            (selector,) = webhook["namespaceSelector"]["matchExpressions"]
            assert selector["operator"] == "NotIn"
            assert {RELEASE_NAMESPACE, "kube-system"} <= set(selector["values"])
            (condition,) = webhook["matchConditions"]
            assert f"'{TAINT_KEY}'" in condition["expression"]
            assert f"'{NODE_TYPE_LABEL}'" in condition["expression"]
            assert f"'{NODE_TYPE_VALUE}'" in condition["expression"]
            assert "'virtual-runpod'" in condition["expression"]
            paths.add(client["service"]["path"])
    assert paths == {"/mutate", "/validate"}


def test_the_cert_hooks_and_the_webhook_agree_on_secret_service_and_configurations(render: Render) -> None:
    docs = render()
    webhook_spec = find(docs, "Deployment", "-webhook")["spec"]["template"]["spec"]
    (tls_volume,) = [v for v in webhook_spec["volumes"] if "secret" in v]
    config_names = {d["metadata"]["name"] for d in docs if d["kind"].endswith("WebhookConfiguration")}
    service = find(docs, "Service", "-webhook")["metadata"]["name"]

    # Only the serving pair reaches the webhook pods; the CA key stays in the Secret.
    assert [i["key"] for i in tls_volume["secret"]["items"]] == ["tls.crt", "tls.key"]
    jobs = [
        d
        for d in docs
        if d["kind"] == "Job" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "certs"
    ]
    phases = {job["metadata"]["annotations"]["helm.sh/hook"] for job in jobs}
    assert phases == {"pre-install,pre-upgrade", "post-install,post-upgrade"}
    for job in jobs:
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["certs", "ensure"]
        flags = dict(a.removeprefix("--").split("=", 1) for a in args[2:] if "=" in a)
        assert flags["secret-name"] == tls_volume["secret"]["secretName"]
        assert flags["service"] == service
        assert flags["namespace"] == RELEASE_NAMESPACE
        assert set(flags["webhook-config-names"].split(",")) == config_names


def test_notes_print_the_exact_toleration_and_node_selector(helm: Path) -> None:
    result = subprocess.run(
        [
            str(helm),
            "install",
            "rk",
            str(CHART),
            "--dry-run=client",
            "-n",
            RELEASE_NAMESPACE,
            "--set",
            "runpod.apiKey=x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    block = re.search(r"\n(  nodeSelector:\n(?:    .*\n|  tolerations:\n)+)", notes)
    assert block is not None, notes
    spec = yaml.safe_load(block.group(1))

    assert spec == {
        "nodeSelector": {NODE_TYPE_LABEL: NODE_TYPE_VALUE},
        "tolerations": [
            {"key": TAINT_KEY, "operator": "Equal", "value": TAINT_VALUE, "effect": TAINT_EFFECT}
        ],
    }


@pytest.mark.parametrize("values", [(), VALUE_MATRIX["every knob"]], ids=["defaults", "every knob"])
def test_the_chart_installs_exactly_the_webhooks_own_canonical_configurations(
    render: Render, values: tuple[str, ...]
) -> None:
    docs = render(*values, 'webhook.namespaceLabels={"team":"ml"}')
    chart = sorted((d for d in docs if d["kind"].endswith("WebhookConfiguration")), key=lambda d: d["kind"])
    knobs = "every knob" if values else "defaults"
    canonical = render_webhook_configurations(
        name=chart[0]["metadata"]["name"],
        service_name=find(docs, "Service", "-webhook")["metadata"]["name"],
        service_namespace=RELEASE_NAMESPACE,
        node_name="gpu-cloud" if knobs == "every knob" else "virtual-runpod",
        excluded_namespaces=["monitoring"] if knobs == "every knob" else [],
        namespace_labels={"team": "ml"},
        failure_policy="Ignore" if knobs == "every knob" else "Fail",
        timeout_seconds=5 if knobs == "every knob" else 10,
        validate_updates=knobs == "every knob",
    )

    assert [c["webhooks"] for c in chart] == [
        c["webhooks"] for c in sorted(canonical, key=lambda d: d["kind"])
    ]


def test_the_sandbox_option_runs_the_emulator_and_points_the_binder_at_it(render: Render) -> None:
    docs = render("sandbox.enabled=true", 'sandbox.scenario={"timings":{"provisioningS":0.1}}')
    sandbox = find(docs, "Deployment", "-sandbox")
    container = sandbox["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["sandbox", "--host=0.0.0.0"]
    assert "--scenario=/etc/sandbox/scenario.json" in container["args"]
    # The emulated pods' sshd: on the pod's address, which ssh.direct reports (kubectl exec).
    assert {"--ssh-host=0.0.0.0", "--ssh-advertise-host=$(POD_IP)"} <= set(container["args"])
    assert env_of(container)["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    service = find(docs, "Service", "-sandbox")
    assert service["spec"]["ports"][0]["port"] == 8089
    scenario = find(docs, "ConfigMap", "-sandbox")
    assert yaml.safe_load(scenario["data"]["scenario.json"]) == {"timings": {"provisioningS": 0.1}}
    binder_env = env_of(find(docs, "Deployment", "-binder")["spec"]["template"]["spec"]["containers"][0])
    assert binder_env["RUNPOD_BASE_URL"] == f"http://rk-runpod-kubelet-sandbox.{RELEASE_NAMESPACE}.svc:8089"
    # Binder and emulator read the same key from the chart's Secret: "sandbox" when none is set.
    secret = find(docs, "Secret", "-runpod")
    assert secret["stringData"] == {"RUNPOD_API_KEY": "sandbox"}
    assert env_of(container)["RUNPOD_API_KEY"] == binder_env["RUNPOD_API_KEY"]


def test_without_the_sandbox_option_nothing_of_it_is_rendered_and_runpod_is_real(render: Render) -> None:
    docs = render("runpod.apiKey=x")
    assert [d for d in docs if d["metadata"]["name"].endswith("-sandbox")] == []
    binder_env = env_of(find(docs, "Deployment", "-binder")["spec"]["template"]["spec"]["containers"][0])
    assert binder_env["RUNPOD_BASE_URL"] == "https://api.runpod.io"


def test_uninstall_hooks_drain_the_node_before_and_remove_run_time_objects_after(render: Render) -> None:
    docs = render("runpod.apiKey=x", "kubelet.namespace=kube-system")
    drain, remove = find(docs, "Job", "-uninstall-drain"), find(docs, "Job", "-uninstall-remove")
    assert drain["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert remove["metadata"]["annotations"]["helm.sh/hook"] == "post-delete"
    drain_args = drain["spec"]["template"]["spec"]["containers"][0]["args"]
    remove_args = remove["spec"]["template"]["spec"]["containers"][0]["args"]
    assert drain_args[:2] == ["uninstall", "drain"]
    assert remove_args[:2] == ["uninstall", "remove"]
    assert f"--secret-namespace={RELEASE_NAMESPACE}" in remove_args
    assert "--ssh-secret-name=rk-runpod-kubelet-ssh" in remove_args
    binder_env = env_of(find(docs, "Deployment", "-binder")["spec"]["template"]["spec"]["containers"][0])
    assert binder_env["SSH_KEY_SECRET"] == "rk-runpod-kubelet-ssh"  # in POD_NAMESPACE, the release's
    assert "--namespace=kube-system" in remove_args
    # Namespaced deletes by name only: the TLS and SSH key Secrets in the release namespace, the
    # catalog in the work namespace; nothing else, and no list or write of Secrets anywhere.
    roles = {(r["metadata"]["namespace"], rule["resources"][0], tuple(rule["resourceNames"])) for r in docs
             if r["kind"] == "Role" and r["metadata"]["name"].endswith("-uninstall") for rule in r["rules"]}  # fmt: skip
    assert roles == {
        (RELEASE_NAMESPACE, "secrets", ("rk-runpod-kubelet-webhook-tls", "rk-runpod-kubelet-ssh")),
        ("kube-system", "configmaps", ("runpod-catalog",)),
    }


@pytest.mark.parametrize(
    "values",
    [(), VALUE_MATRIX["every knob"], ("kubelet.namespace=kube-system",)],
    ids=["defaults", "every knob", "work namespace elsewhere"],
)
def test_the_chart_installs_exactly_the_canonical_admission_policy_with_the_binder_as_state_writer(
    render: Render, values: tuple[str, ...]
) -> None:
    docs = render(*values, 'webhook.namespaceLabels={"team":"ml"}')
    guard = [find(docs, "ValidatingAdmissionPolicy"), find(docs, "ValidatingAdmissionPolicyBinding")]
    webhook = find(docs, "MutatingWebhookConfiguration")["webhooks"][0]
    binder_account = find(docs, "Deployment", "-binder")["spec"]["template"]["spec"]["serviceAccountName"]
    (excluded,) = webhook["namespaceSelector"]["matchExpressions"]
    canonical = render_admission_policy(
        name=guard[0]["metadata"]["name"],
        service_namespace=RELEASE_NAMESPACE,
        state_writers=[f"system:serviceaccount:{RELEASE_NAMESPACE}:{binder_account}"],
        node_name="gpu-cloud" if values == VALUE_MATRIX["every knob"] else "virtual-runpod",
        excluded_namespaces=excluded["values"],
        namespace_labels={"team": "ml"},
    )

    assert [{k: v for k, v in d.items() if k != "metadata"} for d in guard] == [
        {k: v for k, v in d.items() if k != "metadata"} for d in canonical
    ]
    assert guard[0]["metadata"]["name"] == guard[1]["metadata"]["name"] == guard[1]["spec"]["policyName"]
    # Scoped as the webhooks are: they and the policy see exactly the same pods.
    assert guard[1]["spec"]["matchResources"]["namespaceSelector"] == webhook["namespaceSelector"]
    assert guard[0]["spec"]["matchConditions"] == webhook["matchConditions"]
    if "kubelet.namespace=kube-system" in values:
        assert "kube-system" in excluded["values"]


def test_the_chart_installs_the_canonical_network_volume_storage_class_and_the_rbac_it_needs(
    render: Render,
) -> None:
    from contract.volumes import render_storage_class

    docs = render()
    storage_class = find(docs, "StorageClass")
    canonical = render_storage_class()
    assert {k: v for k, v in storage_class.items() if k != "metadata"} == {
        k: v for k, v in canonical.items() if k != "metadata"
    }
    assert storage_class["metadata"]["name"] == "runpod-network-volume"
    binder_rules = find(docs, "ClusterRole", "-binder")["rules"]
    webhook_rules = find(docs, "ClusterRole", "-webhook")["rules"]

    def verbs(rules: list[dict[str, Any]], resource: str) -> set[str]:
        return {v for r in rules if resource in r["resources"] for v in r["verbs"]}

    assert verbs(binder_rules, "persistentvolumes") == {"get", "list", "watch", "create", "patch", "delete"}
    assert verbs(binder_rules, "persistentvolumeclaims") == {"get", "list", "watch"}
    assert verbs(binder_rules, "serviceaccounts") == {"get"}
    assert (
        verbs(webhook_rules, "persistentvolumeclaims")
        == verbs(webhook_rules, "persistentvolumes")
        == {
            "get",
            "list",
            "watch",
        }
    )
    assert not any(d["kind"] == "StorageClass" for d in render("storageClass.enabled=false"))
