"""The few Kubernetes API calls the operator makes itself, as plain dicts, off the event loop.

Kopf watches and indexes; writes go through here so that status patches can carry a
``resourceVersion`` precondition (optimistic concurrency: a stale view never overwrites a
newer decision, even with two operator replicas active at once).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import kubernetes
from kubernetes.client import ApiException

from supercheck.models import VERSION
from supercheck.ports import AlreadyExists, ApiUnavailable, Conflict, Obj, Refused
from supercheck.vocabulary import GROUP, JOBRUNS, TESTRUNS

log = logging.getLogger(__name__)

__all__ = ["AlreadyExists", "ApiUnavailable", "Conflict", "Kube", "Refused", "load_config"]

# 4xx answers to a create that are not a refusal of the object itself: 401 (the operator's own
# credentials), 404 (the namespace is gone), 408 (a timeout), 409 (AlreadyExists, handled), 429 (throttled).
NOT_REFUSALS = frozenset({401, 404, 408, 409, 429})


def load_config(pool_size: int = 32) -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    cfg = kubernetes.client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = pool_size
    kubernetes.client.Configuration.set_default(cfg)


def _data(resp: Any) -> Any:
    raw = resp.data if hasattr(resp, "data") else resp
    return json.loads(raw) if raw else None


LIST_PAGE = 250  # items per page of a full list: the operator never holds one whole list's JSON

# What a full list keeps of each object: the fields the ledger repair and the pod sweep read
# (supercheck.repair, supercheck.pods.pod_view). A run's script and a pod's spec are most of their
# bytes and are never read there; dropping them page by page keeps what a reconcile holds small
# however large the scripts and however many finished runs and pods the cluster keeps.
_META_KEEP = ("name", "namespace", "uid", "labels", "ownerReferences", "creationTimestamp", "deletionTimestamp")
_RUN_STATUS_KEEP = ("phase", "slot", "slots", "queueSeq", "completedAt", "startedAt")
_POD_STATUS_KEEP = ("phase", "reason", "message", "containerStatuses")


def _pick(d: Any, keys: Sequence[str]) -> Obj:
    return {k: d[k] for k in keys if k in d} if isinstance(d, dict) else {}


def slim_run(obj: Obj) -> Obj:
    spec = obj.get("spec") or {}
    return {"metadata": _pick(obj.get("metadata"), _META_KEEP),
            "spec": {"priority": spec["priority"]} if "priority" in spec else {},
            "status": _pick(obj.get("status"), _RUN_STATUS_KEEP)}


def slim_pod(obj: Obj) -> Obj:
    return {"metadata": _pick(obj.get("metadata"), _META_KEEP), "status": _pick(obj.get("status"), _POD_STATUS_KEEP)}


def _list_all(fn: Callable[..., Any], *args: Any, slim: Callable[[Obj], Obj], **kwargs: Any) -> list[Obj]:
    """Every item of a list call, page by page (``limit``/``continue``), each slimmed as it arrives."""
    items: list[Obj] = []
    token = None
    while True:
        page = _call(fn, *args, limit=LIST_PAGE, **({"_continue": token} if token else {}), **kwargs) or {}
        items += [slim(item) for item in page.get("items") or []]
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


def refused(exc: ApiException) -> Refused | None:
    """The API server's refusal of an object, with its own message (a Status ``message``); None for an
    answer that is not one (:data:`NOT_REFUSALS`, 5xx)."""
    status = int(exc.status or 0)
    if not 400 <= status < 500 or status in NOT_REFUSALS:
        return None
    message = ""
    try:
        body = json.loads(exc.body or "{}")
        message = str(body.get("message") or "") if isinstance(body, dict) else ""
    except (TypeError, ValueError):
        pass
    return Refused(status, message or f"{status} {exc.reason}")


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return _data(fn(*args, _preload_content=False, **kwargs))
    except ApiException as exc:
        if exc.status == 409:
            reason = ""
            try:
                reason = json.loads(exc.body or "{}").get("reason", "")
            except ValueError:
                pass
            if reason == "AlreadyExists":
                raise AlreadyExists(str(exc.reason)) from exc
            raise Conflict(str(exc.reason)) from exc
        if exc.status in (0, 429) or exc.status >= 500:
            raise ApiUnavailable(f"{exc.status} {exc.reason}") from exc
        raise
    except (OSError, kubernetes.client.exceptions.OpenApiException) as exc:  # urllib3 errors are OSErrors
        raise ApiUnavailable(str(exc)) from exc


class Kube:
    """Thin async facade (the engine's :class:`supercheck.ports.Kube`); each call runs in the
    default executor thread pool.

    ``namespaces``: the namespaces the operator watches (SUPERCHECK_NAMESPACES); empty, the whole
    cluster. Watching a list, the operator's RBAC holds only Roles in those namespaces, so its
    lists go namespace by namespace instead of cluster-wide (which would be forbidden)."""

    def __init__(self, namespaces: Sequence[str] = ()) -> None:
        self.core = kubernetes.client.CoreV1Api()
        self.custom = kubernetes.client.CustomObjectsApi()
        self.networking = kubernetes.client.NetworkingV1Api()
        self.namespaces = list(namespaces)
        self._logs_forbidden_said = False

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        return cast(Obj, await asyncio.to_thread(_call, fn, *args, **kwargs))

    async def _maybe(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj | None:
        try:
            return await self._run(fn, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # --- TestRuns and JobRuns (``plural``)
    async def get_run(self, namespace: str, name: str, plural: str = TESTRUNS) -> Obj | None:
        return await self._maybe(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name)

    async def _list(self, fn: Callable[..., Any], *args: Any, slim: Callable[[Obj], Obj], **kwargs: Any) -> list[Obj]:
        return cast(list[Obj], await asyncio.to_thread(_list_all, fn, *args, slim=slim, **kwargs))

    async def list_runs(self) -> list[Obj]:
        """Every TestRun and JobRun of the cluster (the ledger's truth), slimmed (:func:`slim_run`)."""
        items: list[Obj] = []
        for plural in (TESTRUNS, JOBRUNS):
            try:
                if self.namespaces:
                    for ns in self.namespaces:
                        items += await self._list(self.custom.list_namespaced_custom_object, GROUP, VERSION, ns,
                                                  plural, slim=slim_run)
                    continue
                items += await self._list(self.custom.list_cluster_custom_object, GROUP, VERSION, plural,
                                          slim=slim_run)
            except ApiException as exc:
                if exc.status == 404 and plural == JOBRUNS:  # the JobRun CRD is not installed (yet)
                    continue
                raise
        return items

    async def patch_status(self, namespace: str, name: str, status: Obj, resource_version: str | None,
                           plural: str = TESTRUNS) -> Obj:
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            return await self._run(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace,
                                   plural, name, body)
        except ApiException as exc:
            if exc.status == 404:
                raise Conflict("the run is gone") from exc
            raise

    async def delete_run(self, namespace: str, name: str, uid: str, plural: str = TESTRUNS) -> None:
        body = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        try:
            await self._run(self.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace, plural, name,
                            body=body)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    # --- runs made by a RunSchedule or a Monitor, and those kinds' status
    async def create_run(self, obj: Obj, plural: str = TESTRUNS) -> Obj | None:
        """Create a TestRun or JobRun; None when one of that name exists already (a deterministic
        name makes the creation idempotent: that is how a scheduled time is never run twice)."""
        ns = obj["metadata"]["namespace"]
        try:
            return await self._run(self.custom.create_namespaced_custom_object, GROUP, VERSION, ns, plural, obj)
        except ApiException as exc:
            if exc.status == 409:
                return None
            refusal = refused(exc)
            if refusal is not None:
                raise refusal from exc
            raise

    async def list_labelled(self, namespace: str, plural: str, label_selector: str) -> list[Obj]:
        """The objects of ``plural`` in ``namespace`` carrying these labels."""
        out = await self._run(self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural,
                              label_selector=label_selector)
        return cast(list[Obj], out.get("items", []))

    # --- Pods, ConfigMaps, Secrets
    async def create(self, obj: Obj) -> Obj:
        ns = obj["metadata"]["namespace"]
        kind = obj["kind"]
        fn = {
            "Pod": self.core.create_namespaced_pod,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Secret": self.core.create_namespaced_secret,
            "NetworkPolicy": self.networking.create_namespaced_network_policy,
        }[kind]
        try:
            return await self._run(fn, ns, obj)
        except ApiException as exc:
            refusal = refused(exc)
            if refusal is not None:
                raise refusal from exc
            raise

    async def get_pod(self, namespace: str, name: str) -> Obj | None:
        return await self._maybe(self.core.read_namespaced_pod, name, namespace)

    async def get_configmap(self, namespace: str, name: str) -> Obj | None:
        return await self._maybe(self.core.read_namespaced_config_map, name, namespace)

    async def get_secret(self, namespace: str, name: str) -> Obj | None:
        return await self._maybe(self.core.read_namespaced_secret, name, namespace)

    async def replace_secret(self, obj: Obj) -> Obj:
        return await self._run(self.core.replace_namespaced_secret, obj["metadata"]["name"],
                               obj["metadata"]["namespace"], obj)

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self._run(self.core.delete_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
    async def get_network_policy(self, namespace: str, name: str) -> Obj | None:
        return await self._maybe(self.networking.read_namespaced_network_policy, name, namespace)

    async def replace_network_policy(self, obj: Obj) -> Obj:
        return await self._run(self.networking.replace_namespaced_network_policy, obj["metadata"]["name"],
                               obj["metadata"]["namespace"], obj)

    async def delete_pod(self, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        body: dict[str, Any] = {}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        try:
            await self._run(self.core.delete_namespaced_pod, name, namespace, body=body)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def list_pods(self, label_selector: str) -> list[Obj]:
        """The pods these labels select, slimmed (:func:`slim_pod`: no spec)."""
        if self.namespaces:
            items: list[Obj] = []
            for ns in self.namespaces:
                items += await self._list(self.core.list_namespaced_pod, ns, label_selector=label_selector,
                                          slim=slim_pod)
            return items
        return await self._list(self.core.list_pod_for_all_namespaces, label_selector=label_selector, slim=slim_pod)

    async def pod_log_tail(self, namespace: str, name: str, container: str, lines: int,
                           limit_bytes: int) -> str | None:
        return await asyncio.to_thread(self._pod_log_tail, namespace, name, container, lines, limit_bytes)

    def _pod_log_tail(self, namespace: str, name: str, container: str, lines: int, limit_bytes: int) -> str | None:
        try:
            resp = self.core.read_namespaced_pod_log(name, namespace, container=container, tail_lines=lines,
                                                     limit_bytes=limit_bytes, _preload_content=False)
            return bytes(resp.data).decode("utf-8", "replace")
        except ApiException as exc:
            if exc.status in (400, 404):  # not started yet, or gone
                return None
            if exc.status == 403:
                if not self._logs_forbidden_said:
                    self._logs_forbidden_said = True
                    log.warning("reading runner logs is forbidden (%s): the Uploading phase is not shown; grant "
                                "the operator get on pods/log (the chart's ClusterRole does)", exc.reason)
                return None
            if exc.status in (0, 429) or exc.status >= 500:
                raise ApiUnavailable(f"{exc.status} {exc.reason}") from exc
            log.warning("runner log of %s/%s not read: %s %s", namespace, name, exc.status, exc.reason)
            return None  # advisory: never a reason to stop driving the run
        except (OSError, kubernetes.client.exceptions.OpenApiException) as exc:
            raise ApiUnavailable(str(exc)) from exc
