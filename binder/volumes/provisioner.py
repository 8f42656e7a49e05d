"""VolumeProvisioner: claims of our StorageClass become RunPod network volumes (leader only).

One loop, the only writer of our PVs and of RunPod volumes: watches of claims, PVs and
StorageClasses wake it; each pass gathers the work, and only when there is some lists the
account's volumes once (`GET /v2/network-volumes`), then:

- provision: for each Pending claim of ours without a PV, the volume named after its UID is
  found in that list or created (`POST`, with the data center chosen in `provisioning`; one
  `GET /v2/catalog/datacenters` per pass when a claim does not fix it), then its PV is created
  pre-bound to the claim; the PV controller binds them. A crash between the two finds the
  volume by name next pass: never two volumes for one claim.
- static PVs (made by hand for an existing volume, by id): the volume's data center is looked
  up in the list and recorded on the PV (`runpod.io/network-volume-datacenter`).
- grow: a bound claim asking more than its PV has is resized (`PATCH`, grow only), then the PV's
  capacity and the claim's status capacity are updated.
- reclaim: a Released PV with reclaimPolicy Delete, or a PV being deleted, has its volume
  deleted (404 = done; Retain keeps it), then our finalizer removed and the PV deleted.

Steady state (nothing pending) costs no RunPod call. Failures are Events on the claim
(`ProvisioningFailed`) or logs, and retried on the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from kubernetes_asyncio.client import ApiClient

from binder.events import EventRecorder
from binder.volumes.provisioning import (
    build_pv,
    capacity_gb,
    choose_datacenter,
    pv_name,
    requested_gb,
    volume_name,
)
from contract.catalog import Catalog
from contract.policy import NodePolicy
from contract.volumes import (
    DATACENTER_ANNOTATION,
    FINALIZER,
    PARAM_NODE_NAME,
    PROVISIONER,
    claim_provisioner,
    network_volume_of,
)
from kit.kube import (
    MERGE_PATCH,
    AlreadyExists,
    KubeError,
    NotFound,
    Reflector,
    delete_json,
    patch_json,
    post_json,
)
from runpod_api.client import RunPodClient
from runpod_api.errors import (
    RunPodBadRequest,
    RunPodError,
    RunPodForbidden,
    RunPodNotFound,
    RunPodUnprocessable,
)
from runpod_api.models import CreateNetworkVolumeRequest, NetworkVolume

__all__ = ["VolumeProvisioner"]

log = logging.getLogger(__name__)

BUSY_INTERVAL: Final = 2.0
IDLE_INTERVAL: Final = 30.0
# A claim that cannot be provisioned, or a static PV whose volume is not in the account, is
# looked at again only after this (so a broken claim does not cost a RunPod list every pass).
PROBLEM_RETRY: Final = 60.0


class VolumeProvisioner:
    def __init__(
        self,
        *,
        api: ApiClient,
        runpod: RunPodClient,
        events: EventRecorder,
        policy: NodePolicy,
        node_name: str,
        cluster_id: str,
        fence: Callable[[], None],
        catalog: Callable[[], Catalog | None] = lambda: None,
    ) -> None:
        self._api, self._runpod, self._events = api, runpod, events
        self._policy, self._node, self._cluster_id = policy, node_name, cluster_id
        self._fence, self._catalog = fence, catalog
        self._wake = asyncio.Event()
        # "claim/<uid>" or "pv/<name>" -> monotonic time before which it is left alone.
        self._quiet_until: dict[str, float] = {}
        wake: Callable[[str, dict[str, Any]], None] = lambda _type, _obj: self._wake.set()  # noqa: E731
        self.claims = Reflector(api, path="/api/v1/persistentvolumeclaims", on_event=wake)
        self.volumes = Reflector(api, path="/api/v1/persistentvolumes", on_event=wake)
        self.classes = Reflector(api, path="/apis/storage.k8s.io/v1/storageclasses", on_event=wake)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for name, reflector in (
                ("claims", self.claims),
                ("pvs", self.volumes),
                ("classes", self.classes),
            ):
                group.create_task(reflector.run(), name=f"provisioner-watch-{name}")
            group.create_task(self._loop(), name="provisioner-loop")

    async def _loop(self) -> None:
        for reflector in (self.claims, self.volumes, self.classes):
            await reflector.synced.wait()
        while True:
            self._wake.clear()
            busy = False
            try:
                busy = await self.reconcile()
            except (KubeError, RunPodError) as exc:
                busy = True
                log.warning("network-volume pass failed (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=BUSY_INTERVAL if busy else IDLE_INTERVAL)

    def _our_classes(self) -> dict[str, Mapping[str, Any]]:
        return {
            str((c.get("metadata") or {}).get("name")): c
            for c in self.classes.items.values()
            if c.get("provisioner") == PROVISIONER
            and (c.get("parameters") or {}).get(PARAM_NODE_NAME, self._node) == self._node
        }

    async def reconcile(self) -> bool:
        """One pass; True when work remains (look again soon)."""
        classes = self._our_classes()
        pvs = dict(self.volumes.items)
        pending = [
            c
            for c in self.claims.items.values()
            if (c.get("spec") or {}).get("storageClassName") in classes
            and claim_provisioner(c) in (PROVISIONER, None)
            and (c.get("status") or {}).get("phase") == "Pending"
            and not (c.get("spec") or {}).get("volumeName")
            and pv_name(str((c.get("metadata") or {}).get("uid"))) not in pvs
            and not (c.get("metadata") or {}).get("deletionTimestamp")
            and not self._quiet(f"claim/{(c.get('metadata') or {}).get('uid')}")
        ]
        ours = {name: pv for name, pv in pvs.items() if network_volume_of(pv) is not None}
        unlocated = [
            pv
            for pv in ours.values()
            if not ((pv.get("metadata") or {}).get("annotations") or {}).get(DATACENTER_ANNOTATION)
            and not self._quiet(f"pv/{(pv.get('metadata') or {}).get('name')}")
        ]
        reclaim = [pv for pv in ours.values() if _reclaimable(pv)]
        grow = self._growing(ours)
        if not (pending or unlocated or reclaim or grow):
            return False
        listed = {v.name: v for v in await self._runpod.list_network_volumes()}
        by_id = {v.id: v for v in listed.values()}
        offering: list[str] | None = None
        for claim in pending:
            storage_class = classes.get(str((claim.get("spec") or {}).get("storageClassName")), {})
            plan = choose_datacenter(
                claim, storage_class, policy=self._policy, offering=offering, catalog=self._catalog()
            )
            if plan.problem is None and plan.datacenter_id is None:
                answer = await self._runpod.datacenters(network_volume_type=plan.volume_type)
                offering = [
                    str(d.get("id")) for d in answer.get("dataCenters") or [] if d.get("networkVolumeTypes")
                ]
                plan = choose_datacenter(
                    claim, storage_class, policy=self._policy, offering=offering, catalog=self._catalog()
                )
            await self._provision(claim, storage_class, plan, listed)
        for pv in unlocated:
            await self._locate(pv, by_id)
        for pv in reclaim:
            await self._reclaim(pv)
        for grown_claim, grown_pv, size in grow:
            await self._grow(grown_claim, grown_pv, size)
        return True

    def _quiet(self, key: str) -> bool:
        return self._quiet_until.get(key, 0.0) > time.monotonic()

    def _hush(self, key: str) -> None:
        self._quiet_until[key] = time.monotonic() + PROBLEM_RETRY

    async def _provision(
        self,
        claim: Mapping[str, Any],
        storage_class: Mapping[str, Any],
        plan: Any,
        listed: dict[str, NetworkVolume],
    ) -> None:
        metadata = claim.get("metadata") or {}
        event_target = {**claim, "apiVersion": "v1", "kind": "PersistentVolumeClaim"}
        if plan.problem is not None or plan.datacenter_id is None:
            self._hush(f"claim/{metadata.get('uid')}")
            self._fence()
            await self._events.record(
                event_target, type="Warning", reason="ProvisioningFailed", message=str(plan.problem)
            )
            return
        name = volume_name(self._cluster_id, str(metadata.get("uid")))
        volume = listed.get(name)
        if volume is None:
            self._fence()
            try:
                volume = await self._runpod.create_network_volume(
                    CreateNetworkVolumeRequest(
                        name=name, size=plan.size_gb, data_center=plan.datacenter_id, type=plan.volume_type
                    )
                )
            except (RunPodBadRequest, RunPodForbidden, RunPodNotFound, RunPodUnprocessable) as exc:
                # Refused for good (an ambiguous answer is left to the next pass's list instead).
                self._hush(f"claim/{metadata.get('uid')}")
                message = f"RunPod refused the network volume: {exc.detail}"
                await self._events.record(
                    event_target, type="Warning", reason="ProvisioningFailed", message=message
                )
                return
            listed[name] = volume
            log.info(
                "created RunPod network volume %s for claim %s/%s",
                volume.id,
                metadata.get("namespace"),
                metadata.get("name"),
            )
        pv = build_pv(
            claim=claim,
            storage_class=storage_class,
            volume_id=volume.id,
            datacenter_id=volume.data_center or plan.datacenter_id,
            size=max(volume.size, plan.size_gb),
            node_name=self._node,
        )
        self._fence()
        with contextlib.suppress(AlreadyExists):
            await post_json(self._api, "/api/v1/persistentvolumes", pv)
        await self._events.record(
            event_target,
            type="Normal",
            reason="ProvisioningSucceeded",
            message=f"RunPod network volume {volume.id} ({volume.size} GB in {volume.data_center}) as PV {pv['metadata']['name']}",
        )

    async def _locate(self, pv: Mapping[str, Any], by_id: Mapping[str, NetworkVolume]) -> None:
        ref = network_volume_of(pv)
        if ref is None:
            return
        volume = by_id.get(ref.volume_id)
        if volume is None or not volume.data_center:
            self._hush(f"pv/{ref.pv_name}")
            log.warning(
                "PV %s names network volume %s, which the RunPod account does not have",
                ref.pv_name,
                ref.volume_id,
            )
            return
        self._fence()
        await patch_json(
            self._api,
            f"/api/v1/persistentvolumes/{ref.pv_name}",
            {"metadata": {"annotations": {DATACENTER_ANNOTATION: volume.data_center}}},
            MERGE_PATCH,
        )

    async def _reclaim(self, pv: Mapping[str, Any]) -> None:
        ref = network_volume_of(pv)
        if ref is None:
            return
        if (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete":
            self._fence()
            await self._runpod.delete_network_volume(ref.volume_id)
            log.info("deleted RunPod network volume %s (PV %s released)", ref.volume_id, ref.pv_name)
        path = f"/api/v1/persistentvolumes/{ref.pv_name}"
        finalizers = [f for f in (pv.get("metadata") or {}).get("finalizers") or [] if f != FINALIZER]
        self._fence()
        try:
            await patch_json(self._api, path, {"metadata": {"finalizers": finalizers}}, MERGE_PATCH)
            if not (pv.get("metadata") or {}).get("deletionTimestamp"):
                await delete_json(self._api, path)
        except NotFound:
            pass

    def _growing(
        self, ours: Mapping[str, Mapping[str, Any]]
    ) -> list[tuple[Mapping[str, Any], Mapping[str, Any], int]]:
        out: list[tuple[Mapping[str, Any], Mapping[str, Any], int]] = []
        for claim in self.claims.items.values():
            pv = ours.get(str((claim.get("spec") or {}).get("volumeName") or ""))
            wanted = requested_gb(claim)
            have = capacity_gb(pv) if pv is not None else None
            if pv is not None and wanted is not None and have is not None and wanted > have:
                out.append((claim, pv, wanted))
        return out

    async def _grow(self, claim: Mapping[str, Any], pv: Mapping[str, Any], size: int) -> None:
        ref = network_volume_of(pv)
        if ref is None:
            return
        self._fence()
        volume = await self._runpod.resize_network_volume(ref.volume_id, size)
        capacity = {"storage": f"{max(volume.size, size)}G"}
        await patch_json(
            self._api,
            f"/api/v1/persistentvolumes/{ref.pv_name}",
            {"spec": {"capacity": capacity}},
            MERGE_PATCH,
        )
        metadata = claim.get("metadata") or {}
        await patch_json(
            self._api,
            f"/api/v1/namespaces/{metadata.get('namespace')}/persistentvolumeclaims/{metadata.get('name')}/status",
            {"status": {"capacity": capacity, "conditions": None}},
            MERGE_PATCH,
        )
        log.info("grew RunPod network volume %s to %s GB", ref.volume_id, size)


def _reclaimable(pv: Mapping[str, Any]) -> bool:
    metadata = pv.get("metadata") or {}
    if (
        FINALIZER not in (metadata.get("finalizers") or [])
        and (metadata.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") != PROVISIONER
    ):
        return False
    phase = (pv.get("status") or {}).get("phase")
    if metadata.get("deletionTimestamp"):
        return phase != "Bound"
    return phase == "Released" and (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Delete"
