"""The Node object: registration, status, and the heartbeat that keeps it Ready.

Kube-controller-manager's node lifecycle controller judges a node by its Lease in
``kube-node-lease`` (renewed every ~10 s here, as kubelet does) and by the Ready
condition. If both go stale for 40 s it marks the node NotReady/Unknown and taints it,
and after 5 minutes evicts its pods, so the heartbeat must keep going whatever else the
agent is busy with.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
from collections.abc import Mapping
from pathlib import Path

from .kubeapi import KubeAPI, KubeError, utcnow_micro
from .podstatus import now_utc, rfc3339

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
AGENT_VERSION = "supercheck-node-agent/0.1"
# Taints kubelet does not keep once the node reports Ready; removed at start so a node that
# was down (or just created: the NodeTaint admission plugin adds not-ready) schedules at once.
STALE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def go_arch(machine: str | None = None) -> str:
    m = machine or platform.machine()
    return _ARCH.get(m, m)


def node_labels(node_name: str, arch: str | None = None) -> dict[str, str]:
    a = arch or go_arch()
    return {
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": a,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": a,
    }


def node_conditions(now: str, ready_since: str) -> list[dict]:
    def cond(ctype: str, status: str, reason: str, message: str, since: str) -> dict:
        return {"type": ctype, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": since}
    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
             "node agent has sufficient memory available", ready_since),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "node agent has no disk pressure", ready_since),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "node agent has sufficient PID available",
             ready_since),
        cond("Ready", "True", "KubeletReady", "node agent is posting ready status", ready_since),
    ]


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def node_info(kubelet_version: str) -> dict:
    machine_id = _read("/etc/machine-id") or _read("/var/lib/dbus/machine-id")
    return {
        "machineID": machine_id,
        "systemUUID": _read("/sys/class/dmi/id/product_uuid") or machine_id,
        "bootID": _read("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": os.uname().release,
        "osImage": _os_image(),
        "containerRuntimeVersion": f"local://{AGENT_VERSION}",
        "kubeletVersion": kubelet_version,
        "kubeProxyVersion": kubelet_version,
        "operatingSystem": "linux",
        "architecture": go_arch(),
    }


def node_status(capacity: Mapping[str, str], port: int, info: Mapping, conditions: list[dict],
                hostname: str) -> dict:
    return {
        "capacity": dict(capacity),
        "allocatable": dict(capacity),
        "conditions": conditions,
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": hostname}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": dict(info),
    }


def without_stale_taints(taints: list[Mapping] | None) -> list[Mapping]:
    return [t for t in taints or [] if t.get("key") not in STALE_TAINTS]


class NodeManager:
    def __init__(self, api: KubeAPI, node_name: str, capacity: Mapping[str, str], port: int,
                 heartbeat_seconds: float = 10.0):
        self.api = api
        self.name = node_name
        self.capacity = dict(capacity)
        self.port = port
        self.heartbeat_seconds = heartbeat_seconds
        self.uid: str | None = None
        self._info: dict | None = None
        self._ready_since: str | None = None

    @property
    def path(self) -> str:
        return f"/api/v1/nodes/{self.name}"

    async def register(self) -> None:
        """Create or update the Node until it is registered and Ready (retries while the API is down)."""
        delay = 0.5
        while True:
            try:
                await self._register_once()
                return
            except KubeError as exc:
                log.warning("node registration failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _register_once(self) -> None:
        if self._info is None:
            version = await self.api.get("/version")
            self._info = node_info(version.get("gitVersion", "v0.0.0"))
        node = await self.api.get_or_none(self.path)
        labels = node_labels(self.name)
        if node is None:
            node = await self.api.create("/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": labels}, "spec": {}})
            log.info("registered node %s", self.name)
        else:
            node = await self.api.merge_patch(self.path, {"metadata": {"labels": labels}})
        self.uid = node["metadata"]["uid"]
        ready = next((c for c in (node.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Ready"), None)
        now = rfc3339(now_utc())
        self._ready_since = ready["lastTransitionTime"] if ready and ready.get("status") == "True" else now
        await self.post_status()
        await self.remove_stale_taints()
        await self.renew_lease()

    async def post_status(self) -> None:
        now = rfc3339(now_utc())
        status = node_status(self.capacity, self.port, self._info or {},
                             node_conditions(now, self._ready_since or now), os.uname().nodename)
        await self.api.merge_patch(f"{self.path}/status", {"status": status})

    async def remove_stale_taints(self) -> None:
        for _ in range(5):
            node = await self.api.get(self.path)
            taints = (node.get("spec") or {}).get("taints") or []
            keep = without_stale_taints(taints)
            if len(keep) == len(taints):
                return
            try:  # resourceVersion makes the patch conditional: a concurrent taint is not lost
                await self.api.merge_patch(self.path, {
                    "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                    "spec": {"taints": keep or None}})
                log.info("removed taints %s from node %s",
                         [t["key"] for t in taints if t not in keep], self.name)
                return
            except KubeError as exc:
                if not exc.conflict:
                    raise

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.name}"
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": utcnow_micro()}
        try:
            await self.api.merge_patch(path, {"spec": spec})
        except KubeError as exc:
            if not exc.not_found:
                raise
            await self.api.create(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                                                  "uid": self.uid}] if self.uid else []},
                "spec": spec})

    async def heartbeat_forever(self) -> None:
        """Renew the Lease and the Ready condition every ``heartbeat_seconds``; re-register if
        the Node was deleted behind our back."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.renew_lease()
                await self.post_status()
            except KubeError as exc:
                if exc.not_found:
                    log.warning("node %s disappeared; registering it again", self.name)
                    await self.register()
                else:
                    log.warning("heartbeat failed: %s", exc)
            except Exception:
                log.exception("heartbeat failed")
