"""The API server, with the user's kubeconfig: the CLI's only way into the cluster.

:class:`Cluster` is what the commands need; :class:`KubeCluster` does it with the kubernetes client
(tests use an in-memory one). The watch runs in a thread that feeds a queue, so the command's own
thread keeps the live bar moving and answers Ctrl-C at once.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Protocol, cast

from supercheck.cli.follow import Body, Source
from supercheck.cli.submit import GROUP_VERSION, Plan, owned_by

GROUP, VERSION = GROUP_VERSION.split("/")
PLURALS = {"TestRun": "testruns", "JobRun": "jobruns"}
RUNNER_CONTAINER = "runner"
WATCH_SECONDS = 50  # each watch request; renewed from the last resourceVersion
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")  # in a pod: its token, CA, namespace


class Cluster(Protocol):
    def create(self, plan: Plan) -> Body: ...

    def get(self, plural: str, namespace: str, name: str) -> Body | None: ...

    def delete(self, plural: str, namespace: str, name: str) -> None: ...

    def watch(self, plural: str, namespace: str, name: str) -> Source: ...

    def list(self, plural: str, namespace: str | None) -> list[Body]: ...

    def pod_log(self, namespace: str, pod: str, tail: int | None) -> str: ...


def load(kubeconfig: str | None, context: str | None,
         service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> tuple[Any, str]:
    """An API client and the context's namespace ('default' when it names none).

    In a pod with no kubeconfig (the chart's `helm test`), as kubectl does: the pod's ServiceAccount
    and namespace.
    """
    from kubernetes import client, config
    from kubernetes.config.incluster_config import InClusterConfigLoader

    default_kubeconfig = Path(os.path.expanduser(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]))
    if (kubeconfig is None and context is None and not default_kubeconfig.exists()
            and os.environ.get("KUBERNETES_SERVICE_HOST")):
        configuration = client.Configuration()
        InClusterConfigLoader(str(service_account_dir / "token"), str(service_account_dir / "ca.crt")).load_and_set(
            configuration)
        try:
            own_namespace = (service_account_dir / "namespace").read_text().strip()
        except OSError:
            own_namespace = ""
        return client.ApiClient(configuration), own_namespace or "default"
    api = config.new_client_from_config(config_file=kubeconfig, context=context)
    namespace = "default"
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        chosen = next((c for c in contexts if c["name"] == context), active) if context else active
        namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
    except (config.ConfigException, KeyError, TypeError):
        pass
    return api, namespace


class WatchSource:
    """The run's events from the API server, read by a daemon thread: first the object as it is,
    then each change; a watch that expires or breaks is renewed (reading the object again)."""

    def __init__(self, cluster: KubeCluster, plural: str, namespace: str, name: str) -> None:
        self.cluster, self.plural, self.namespace, self.name = cluster, plural, namespace, name
        self.events: queue.Queue[tuple[str, Body]] = queue.Queue()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        while not self.stopped.is_set():
            try:
                body = self.cluster.get(self.plural, self.namespace, self.name)
                if body is None:
                    self.events.put(("DELETED", {}))
                    return
                self.events.put(("MODIFIED", body))
                w = watch.Watch()
                for event in w.stream(self.cluster.custom.list_namespaced_custom_object, GROUP, VERSION,
                                      self.namespace, self.plural, field_selector=f"metadata.name={self.name}",
                                      resource_version=body["metadata"]["resourceVersion"],
                                      timeout_seconds=WATCH_SECONDS):
                    if self.stopped.is_set():
                        w.stop()
                        return
                    kind, obj = event.get("type"), event.get("object")
                    if kind in ("ADDED", "MODIFIED", "DELETED") and isinstance(obj, dict):
                        self.events.put((kind, obj))
                        if kind == "DELETED":
                            return
            except ApiException as exc:
                if exc.status != 410:  # 410: the resourceVersion is too old; read again at once
                    time.sleep(1)
            except Exception:  # noqa: BLE001 - a broken connection: read again after a pause
                time.sleep(1)

    def next(self, timeout: float) -> tuple[str, Body] | None:
        try:
            return self.events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def close(self) -> None:
        self.stopped.set()


class KubeCluster:
    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def create(self, plan: Plan) -> Body:
        created = cast(Body, self.custom.create_namespaced_custom_object(
            GROUP, VERSION, plan.run["metadata"]["namespace"], plan.plural, plan.run))
        if plan.config_map is not None:
            # Created after the run so that the run owns it (the operator waits a grace period for it).
            self.core.create_namespaced_config_map(plan.config_map["metadata"]["namespace"],
                                                   owned_by(plan.config_map, created))
        return created

    def get(self, plural: str, namespace: str, name: str) -> Body | None:
        from kubernetes.client.rest import ApiException

        try:
            return cast(Body, self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, plural: str, namespace: str, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def watch(self, plural: str, namespace: str, name: str) -> Source:
        return WatchSource(self, plural, namespace, name)

    def list(self, plural: str, namespace: str | None) -> list[Body]:
        if namespace is None:
            found = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        else:
            found = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        return cast(list[Body], found.get("items", []))

    def pod_log(self, namespace: str, pod: str, tail: int | None) -> str:
        kwargs: dict[str, Any] = {"container": RUNNER_CONTAINER}
        if tail:
            kwargs["tail_lines"] = tail
        return cast(str, self.core.read_namespaced_pod_log(pod, namespace, **kwargs))
