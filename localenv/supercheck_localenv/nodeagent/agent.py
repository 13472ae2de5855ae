"""The node agent: wires the Node, the pod watch, the pod workers and the log server.

Event flow: :class:`PodWatch` (a thread) lists and watches the pods bound to the node and
queues what it sees; :meth:`NodeAgent._dispatch` gives each pod to its
:class:`PodWorker`, creating one on first sight and calling ``gone()`` when the object
disappears. A re-list (start, 410 Gone, errors) is reconciled in full, so a missed watch
event never leaves a process running for a pod that no longer exists.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time

from .cgroups import CgroupManager, CgroupUnavailable
from .config import AgentConfig
from .containers import ContainerRuntime
from .envvars import inherited_env, service_env
from .events import EventRecorder
from .kubeapi import KubeAPI, PodWatch
from .logserver import LogLookupError, LogServer, LogSource
from .node import NodeManager
from .podworker import AgentContext, PodWorker
from .proctree import become_subreaper
from .volumes import remove_tree

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 3.0  # SIGTERM -> SIGKILL for containers when the agent itself stops
LOG_RETENTION_SECONDS = 3600  # logs of pods that no longer exist are kept this long
SWEEP_INTERVAL = 300


def enforcement(cfg: AgentConfig) -> CgroupManager | None:
    """The cgroups the containers get (None: memory limits by sampling), with one log line per
    choice, so the agent's log says which kind of limits and users the tests are seeing."""
    if cfg.run_as == "pod":
        log.info("containers run as their securityContext runAsUser/runAsGroup (root when unset), "
                 "with fsGroup ownership on their volumes; non-root ones %s",
                 "each in a PID namespace of its own" if cfg.pid_namespace == "non-root"
                 else "in the host's PID namespace (--pid-namespace off)")
    else:
        log.warning("--run-as root: every container runs as root; runAsUser, runAsGroup, fsGroup and "
                    "runAsNonRoot are ignored")
    if cfg.cgroups == "off":
        log.warning("--cgroups off: no CPU limits; memory limits enforced by sampling every 250 ms")
        return None
    try:
        manager = CgroupManager(cfg.cgroup_folder)
    except CgroupUnavailable as exc:
        log.warning("cgroups unavailable (%s): no CPU limits; memory limits enforced by sampling every 250 ms",
                    exc)
        return None
    log.info("each container in its own cgroup v1 cpu and memory groups under %s: the kernel enforces "
             "limits.cpu (CFS quota), requests.cpu (shares) and limits.memory (OOM killer)%s",
             manager.describe(), "" if manager.has_memsw else "; no memsw file: swap is not limited")
    return manager


class NodeAgent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.workers: dict[str, PodWorker] = {}
        self._queue: asyncio.Queue = asyncio.Queue()
        self._synced_once = False

    # ------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        # Root's alone, as kubelet's /var/lib/kubelet: containers get their volumes through bind
        # mounts the launcher makes as root, and must not walk into another pod's volumes or logs.
        cfg.state_dir.chmod(0o700)
        if not become_subreaper():
            log.warning("could not become a child subreaper; orphaned container processes may linger as zombies")
        api = KubeAPI(cfg.kubeconfig)
        runtime = ContainerRuntime(cfg.state_dir, enforcement(cfg), cfg.hidden_paths,
                                   pid_namespaces=cfg.pid_namespace == "non-root")
        leftovers = runtime.kill_leftovers()
        if leftovers:
            log.warning("killed %d container(s) left running by a previous agent run", leftovers)
        node = NodeManager(api, cfg.node_name, cfg.capacity, cfg.port, cfg.heartbeat_seconds)
        register = asyncio.ensure_future(node.register())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([register, stopped], return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            register.cancel()
            api.close()
            return
        log.info("node %s is Ready (capacity %s)", cfg.node_name, cfg.capacity)

        api_host, api_port = api.server_host_port()
        self.ctx = AgentContext(
            api=api, runtime=runtime, events=EventRecorder(api, cfg.node_name), node_name=cfg.node_name,
            state_dir=cfg.state_dir, allocatable=cfg.capacity, services=service_env(api_host, api_port),
            inherited=inherited_env(os.environ, cfg.inherit_env, os.path.dirname(sys.executable)),
            max_grace_seconds=cfg.max_grace_seconds, switch_users=cfg.run_as == "pod")
        runtime.start_background()
        server = LogServer(self.resolve_logs, address=cfg.address, port=cfg.port, cert=cfg.tls_cert,
                           key=cfg.tls_key, client_ca=cfg.client_ca)
        await server.start()

        loop = asyncio.get_running_loop()
        watch = PodWatch(cfg.kubeconfig, cfg.node_name,
                         lambda item: loop.call_soon_threadsafe(self._queue.put_nowait, item))
        watch.start()
        background = [loop.create_task(node.heartbeat_forever(), name="heartbeat"),
                      loop.create_task(self._consume(), name="dispatch"),
                      loop.create_task(self._sweep_forever(), name="sweep")]
        try:
            await stop.wait()
        finally:
            log.info("stopping: %d pod(s) on this node", len(self.workers))
            watch.stop()
            for t in background:
                t.cancel()
            await asyncio.gather(*(w.shutdown(SHUTDOWN_GRACE) for w in list(self.workers.values())),
                                 return_exceptions=True)
            await runtime.close(SHUTDOWN_GRACE)
            await server.stop()
            api.close()
            log.info("stopped")

    async def _consume(self) -> None:
        while True:
            kind, payload = await self._queue.get()
            try:
                await self._dispatch(kind, payload)
            except Exception:  # one bad event must not stop the node
                log.exception("failed to handle %s event", kind)

    async def _dispatch(self, kind: str, payload) -> None:
        if kind == "SYNC":
            seen = set()
            for pod in payload:
                seen.add(pod["metadata"]["uid"])
                self._on_pod(pod)
            for uid in [u for u in self.workers if u not in seen]:
                await self._on_gone(uid)
            if not self._synced_once:
                self._synced_once = True
                self._remove_orphan_pod_dirs(seen)
        elif kind in ("ADDED", "MODIFIED"):
            self._on_pod(payload)
        elif kind == "DELETED":
            await self._on_gone(payload["metadata"]["uid"])

    def _on_pod(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        if worker is None:
            worker = PodWorker(self.ctx, pod)
            self.workers[uid] = worker
            log.info("%s: bound to this node (uid %s, phase %s)", worker.key, uid,
                     (pod.get("status") or {}).get("phase"))
            worker.start()
        else:
            worker.update(pod)

    async def _on_gone(self, uid: str) -> None:
        worker = self.workers.pop(uid, None)
        if worker is not None:
            log.info("%s: pod object removed", worker.key)
            asyncio.get_running_loop().create_task(worker.gone())

    # ------------------------------------------------------------ housekeeping

    def _remove_orphan_pod_dirs(self, live_uids: set[str]) -> None:
        """Volumes of pods that vanished while the agent was down."""
        pods = self.config.state_dir / "pods"
        if pods.is_dir():
            for d in pods.iterdir():
                if d.name not in live_uids:
                    remove_tree(d)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self._sweep_logs()

    def _sweep_logs(self) -> None:
        logs = self.config.state_dir / "logs"
        if not logs.is_dir():
            return
        live = {w.log_dir.name for w in self.workers.values()}
        cutoff = time.time() - LOG_RETENTION_SECONDS
        for d in logs.iterdir():
            try:
                if d.name not in live and d.stat().st_mtime < cutoff:
                    remove_tree(d)
            except OSError:
                pass

    # ------------------------------------------------------------ logs

    def find_worker(self, namespace: str, name: str) -> PodWorker | None:
        found = [w for w in self.workers.values() if w.namespace == namespace and w.name == name]
        return found[-1] if found else None

    def resolve_logs(self, namespace: str, pod: str, container: str, previous: bool) -> LogSource:
        worker = self.find_worker(namespace, pod)
        if worker is not None:
            if container not in worker.container_names():
                raise LogLookupError(400, f"container {container} is not valid for pod {pod}")
            log_dir = worker.log_dir / container
        else:
            # a pod this agent run does not know (deleted since): its logs may still be on disk
            dirs = sorted((self.config.state_dir / "logs").glob(f"{namespace}_{pod}_*"),
                          key=lambda p: p.stat().st_mtime)
            if not dirs:
                raise LogLookupError(404, f'pods "{pod}" not found')
            log_dir = dirs[-1] / container
        attempts = sorted(int(p.stem) for p in log_dir.glob("*.log") if p.stem.isdigit())
        if previous:
            if len(attempts) < 2:
                raise LogLookupError(400, f'previous terminated container "{container}" in pod "{pod}" not found')
            attempt = attempts[-2]
        elif not attempts:
            reason = (worker.waiting_reason(container) if worker else None) or "ContainerCreating"
            raise LogLookupError(400, f'container "{container}" in pod "{pod}" is waiting to start: {reason}')
        else:
            attempt = attempts[-1]
        path = log_dir / f"{attempt}.log"
        return LogSource(path, lambda: worker is not None and worker.live_attempt(container) == attempt)


