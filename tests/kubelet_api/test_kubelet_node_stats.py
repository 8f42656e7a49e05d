"""The kubelet read endpoints' answers, as metrics-server and kubectl read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from binder.kubelet_api.node_stats import pod_list, resource_metrics, running_pods, summary
from binder.pods.usage import UsageLedger, advance
from tests.binder.pods.test_usage import k8s_pod, runpod

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def two_ticks() -> tuple[UsageLedger, list[dict[str, object]]]:
    pods = [
        k8s_pod("u1", limits={"cpu": "2", "memory": "4Gi"}),
        k8s_pod("u2", pod_id="rp2", requests={"cpu": "1"}),
    ]
    runpods = {"rp1": runpod("rp1", cpu=50, memory=50), "rp2": runpod("rp2", status="PROVISIONING")}
    ledger = advance(UsageLedger.empty(), runpod_pods=runpods, pods=pods, now=T0)
    return advance(ledger, runpod_pods=runpods, pods=pods, now=T0 + timedelta(seconds=30)), pods


def test_the_pod_list_is_a_podlist_of_the_nodes_pods_in_a_stable_order() -> None:
    answer = pod_list([k8s_pod("b"), k8s_pod("a")])
    assert (answer["kind"], answer["apiVersion"]) == ("PodList", "v1")
    assert [p["metadata"]["name"] for p in answer["items"]] == ["p-a", "p-b"]


def test_running_pods_are_those_whose_runpod_pod_runs() -> None:
    ledger, pods = two_ticks()
    answer = running_pods(pods, ledger)
    assert [p["metadata"]["uid"] for p in answer["items"]] == ["u1"]
    assert answer["items"][0]["spec"]["containers"] == [{"name": "main", "image": "busybox"}]


def test_a_pod_whose_runpod_pod_was_terminated_is_not_running_before_the_next_tick() -> None:
    ledger, _ = two_ticks()  # the last tick saw u1's RunPod pod running
    terminating = k8s_pod("u1", limits={"cpu": "2", "memory": "4Gi"})
    terminating["metadata"]["annotations"]["runpod.io/terminated"] = "2026-12-02T08:00:31Z"
    assert running_pods([terminating], ledger)["items"] == []


def test_the_summary_gives_node_and_pod_cpu_and_memory_in_absolute_units() -> None:
    ledger, _ = two_ticks()
    answer = summary(
        node_name="virtual-runpod", node_started=T0, usage=ledger, now=T0 + timedelta(seconds=31)
    )
    (pod,) = answer["pods"]
    assert pod["podRef"] == {"name": "p-u1", "namespace": "ns", "uid": "u1"}
    assert pod["cpu"]["usageNanoCores"] == 1_000_000_000  # 50 % of 2 cores
    assert pod["cpu"]["usageCoreNanoSeconds"] == 30 * 10**9  # 1 core for 30 s
    assert pod["memory"]["workingSetBytes"] == 2 * 2**30
    assert pod["containers"][0]["name"] == "main"
    node = answer["node"]
    assert node["nodeName"] == "virtual-runpod"
    assert node["cpu"]["usageCoreNanoSeconds"] == 30 * 10**9
    assert node["memory"]["workingSetBytes"] == 2 * 2**30


def test_resource_metrics_parse_as_prometheus_text_with_timestamps() -> None:
    ledger, _ = two_ticks()
    text = resource_metrics(ledger, now=T0 + timedelta(seconds=31))
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    labels = (("container", "main"), ("namespace", "ns"), ("pod", "p-u1"))
    cpu = samples[("container_cpu_usage_seconds_total", labels)]
    assert cpu.value == 30.0
    assert cpu.timestamp == (T0 + timedelta(seconds=30)).timestamp()
    assert samples[("container_memory_working_set_bytes", labels)].value == 2 * 2**30
    assert samples[("node_cpu_usage_seconds_total", ())].value == 30.0
    assert samples[("resource_scrape_error", ())].value == 0
    # The pod that is not running yet has no series.
    assert not [key for key in samples if ("pod", "p-u2") in key[1]]


def test_before_the_first_tick_the_scrape_says_it_has_no_data() -> None:
    text = resource_metrics(UsageLedger.empty(), now=T0)
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["resource_scrape_error"] == 1
