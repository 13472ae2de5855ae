"""Kubernetes Events about pods, as kubelet records them (`kubectl describe pod` shows them).

Best effort by design: an Event that cannot be written is logged and dropped; it must
never delay or fail the pod it describes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from .kubeapi import KubeAPI, KubeError
from .podstatus import now_utc, rfc3339

log = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, api: KubeAPI, node_name: str):
        self._api = api
        self._node = node_name

    def pod_event(self, pod: Mapping, reason: str, message: str, *, warning: bool = False,
                  container: str | None = None) -> None:
        meta = pod.get("metadata") or {}
        ns = meta.get("namespace", "default")
        now = rfc3339(now_utc())
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": ns,
                    "name": meta.get("name"), "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion")}
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": involved, "reason": reason, "message": message,
            "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": self._node},
            "reportingComponent": "kubelet", "reportingInstance": self._node,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        path = f"/api/v1/namespaces/{ns}/events"

        def send() -> None:
            try:
                self._api.request_sync("POST", path, body=body)
            except KubeError as exc:
                log.debug("event %s for %s/%s not recorded: %s", reason, ns, meta.get("name"), exc)

        self._api.submit(send)
