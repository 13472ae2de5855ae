"""A small JSON client for the API server, usable from asyncio.

The official ``kubernetes`` client is synchronous and turns everything into model
objects. The agent wants plain JSON (the same dicts kubectl prints) and must not block
its event loop, so every call runs on a private thread pool and returns a dict.
The pod watch runs on its own thread (see :class:`PodWatch`) because it holds a
connection open for minutes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = (5, 30)  # (connect, read) seconds: the API server is local; anything slower is broken


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str, reason: str = ""):
        super().__init__(f"{status} {reason}: {message}".strip())
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


def _error_from(exc: ApiException) -> KubeError:
    message, reason = str(exc.reason or ""), ""
    try:
        body = json.loads(exc.body or "{}")
        message = body.get("message", message)
        reason = body.get("reason", "")
    except (ValueError, TypeError):
        if exc.body:
            message = str(exc.body)[:500]
    return KubeError(exc.status or 0, message, reason)


def load_api_client(kubeconfig: str, pool_size: int = 32) -> k8s_client.ApiClient:
    cfg = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return k8s_client.ApiClient(cfg)


class KubeAPI:
    """``await api.request("GET", "/api/v1/nodes/x")`` -> dict, on a thread pool."""

    def __init__(self, kubeconfig: str, workers: int = 16):
        self.kubeconfig = kubeconfig
        self._client = load_api_client(kubeconfig, pool_size=workers * 2)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="kubeapi")

    @property
    def server(self) -> str:
        return self._client.configuration.host

    def server_host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.server)
        return parts.hostname or "127.0.0.1", parts.port or 443

    def request_sync(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                     body: Any = None, content_type: str = "application/json",
                     timeout: Any = REQUEST_TIMEOUT) -> dict:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            resp = self._client.call_api(
                path, method,
                query_params=[(k, v) for k, v in (query or {}).items() if v is not None],
                header_params=headers, body=body, auth_settings=["BearerToken"],
                response_types_map={}, _return_http_data_only=True,
                _preload_content=False, _request_timeout=timeout)
        except ApiException as exc:
            raise _error_from(exc) from None
        except Exception as exc:  # noqa: BLE001  connection refused, TLS, timeouts: the server was not reached
            raise KubeError(0, f"{type(exc).__name__}: {exc}") from None
        data = resp.data
        return json.loads(data) if data else {}

    async def request(self, method: str, path: str, **kwargs: Any) -> dict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self.request_sync(method, path, **kwargs))

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run a best-effort call (Events) without waiting for it."""
        self._pool.submit(fn)

    # -- typed helpers, so call sites read like kubectl

    async def get(self, path: str, **kw: Any) -> dict:
        return await self.request("GET", path, **kw)

    async def get_or_none(self, path: str) -> dict | None:
        try:
            return await self.get(path)
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def create(self, path: str, body: Mapping) -> dict:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Mapping) -> dict:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str, body: Mapping | None = None) -> dict:
        return await self.request("DELETE", path, body=body)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            self._client.close()
        except Exception:  # noqa: BLE001  closing is best effort at shutdown
            pass


class PodWatch:
    """List+watch the pods bound to one node, on a thread; hands events to the event loop.

    Emits ``("SYNC", [pods])`` after every (re-)list and ``("ADDED"|"MODIFIED"|"DELETED", pod)``
    for watch events. Re-lists when the watch's resourceVersion is too old (410 Gone), and
    after any error, so the consumer always converges on the API server's view.
    """

    WATCH_SECONDS = 240

    def __init__(self, kubeconfig: str, node_name: str,
                 emit: Callable[[tuple[str, Any]], object]):
        self._client = load_api_client(kubeconfig, pool_size=2)
        self._selector = f"spec.nodeName={node_name}"
        self._emit = emit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # The thread may sit in a blocking read; closing its response from here can block the
        # caller too (urllib3 locks), so it is left to end with the process (it is a daemon).
        self._stop.set()

    def _call(self, query: dict, stream: bool):
        return self._client.call_api(
            "/api/v1/pods", "GET", query_params=list(query.items()),
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
            response_types_map={}, _return_http_data_only=True, _preload_content=False,
            _request_timeout=(5, self.WATCH_SECONDS + 30) if stream else REQUEST_TIMEOUT)

    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    listing = json.loads(self._call({"fieldSelector": self._selector}, False).data)
                    rv = listing["metadata"]["resourceVersion"]
                    for item in listing.get("items") or []:
                        item.setdefault("kind", "Pod")
                        item.setdefault("apiVersion", "v1")
                    self._emit(("SYNC", listing.get("items") or []))
                resp = self._call({
                    "fieldSelector": self._selector, "watch": "true", "resourceVersion": rv,
                    "allowWatchBookmarks": "true", "timeoutSeconds": str(self.WATCH_SECONDS),
                }, True)
                for line in iter_resp_lines(resp):
                    if self._stop.is_set():
                        return
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            log.info("pod watch expired (410 Gone); re-listing")
                            rv = None
                            break
                        raise KubeError(obj.get("code") or 0, obj.get("message", "watch error"))
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if kind == "BOOKMARK":
                        continue
                    self._emit((kind, obj))
            except ApiException as exc:
                if exc.status == 410:
                    rv = None
                    continue
                self._pause(f"pod watch failed: {_error_from(exc)}")
                rv = None
            except Exception as exc:  # noqa: BLE001  connection dropped, API server restarting...
                if self._stop.is_set():
                    return
                self._pause(f"pod watch failed: {type(exc).__name__}: {exc}")
                rv = None

    def _pause(self, message: str) -> None:
        log.warning("%s; re-listing in 1s", message)
        self._stop.wait(1.0)


def utcnow_micro() -> str:
    """A MicroTime (Lease.renewTime) string."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"
