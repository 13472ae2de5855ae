"""One pod's life on this node: volumes, init containers, containers, restarts, deadline,
deletion, and the status reports in between.

A :class:`PodWorker` is created the first time the agent sees a pod bound to its node
and lives until the pod object is gone. Its ``_run`` task does what kubelet's pod
worker does, in order; a second task pushes the status (see ``podstatus.py`` for the
rules) through the ``pods/status`` subresource whenever something changed, coalescing
bursts. Deletion and the active deadline stop the run from the side, through
``_terminate``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import logformat
from .cgroups import limits_from_resources
from .containers import ContainerProcess, ContainerRuntime, LaunchRequest
from .envvars import EnvError, ObjectSnapshot, container_argv, container_env, process_env, referenced_objects
from .events import EventRecorder
from .identity import IdentityError, container_identity, fs_group, home_for
from .kubeapi import KubeAPI, KubeError
from .mounts import HostVolume, MountError, container_mounts, subpath_sources
from .podstatus import (
    DEADLINE_MESSAGE,
    DEADLINE_REASON,
    TERMINAL_PHASES,
    Attempt,
    ContainerTrack,
    PodView,
    build_pod_status,
    init_restart_policy,
    mark_never_started,
    now_utc,
    parse_time,
    should_restart,
    terminated_reason,
    tracks_from_status,
)
from .quantity import quantity_to_bytes
from .volumes import (
    FileSet,
    TokenSource,
    VolumeError,
    materialize,
    remove_tree,
    render_volume,
    token_sources,
    write_files,
)

log = logging.getLogger(__name__)

TERMINATION_MESSAGE_LIMIT = 4096
BACKOFF_BASE = 1.0  # kubelet starts at 10 s; locally a quick retry is worth more than politeness
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 120.0  # a container that ran this long starts its backoff afresh
SETUP_RETRY_MAX = 5.0
FORCE_DELETE_GRACE = 2.0  # the pod object is already gone: no one waits for a graceful stop


@dataclass
class AgentContext:
    """What every pod worker shares."""

    api: KubeAPI
    runtime: ContainerRuntime
    events: EventRecorder
    node_name: str
    state_dir: Path
    allocatable: Mapping[str, str]
    services: Mapping[str, str]  # the `kubernetes` service variables
    inherited: Mapping[str, str]  # variables from the agent's own environment (PATH, HOME...)
    max_grace_seconds: int = 60
    switch_users: bool = True  # False: every container as root (the agent's --run-as root)

    def pod_dir(self, uid: str) -> Path:
        return self.state_dir / "pods" / uid

    def log_dir(self, namespace: str, name: str, uid: str) -> Path:
        # the layout kubelet uses under /var/log/pods, so the files are easy to find by hand
        return self.state_dir / "logs" / f"{namespace}_{name}_{uid}"


class Backoff:
    def __init__(self) -> None:
        self.delay = 0.0

    def next(self, ran_for: float) -> float:
        if ran_for >= BACKOFF_RESET_AFTER or self.delay == 0:
            self.delay = BACKOFF_BASE
        else:
            self.delay = min(self.delay * 2, BACKOFF_MAX)
        return self.delay


def termination_message(path: Path, policy: str | None, exit_code: int, log_path: Path) -> str:
    """Kubelet's rule: the file (at most 4 KiB); for FallbackToLogsOnError, the log's end when
    the file is empty and the container failed."""
    try:
        with open(path, "rb") as f:
            data = f.read(TERMINATION_MESSAGE_LIMIT)
    except OSError:
        data = b""
    message = data.decode("utf-8", "replace")
    if not message and exit_code != 0 and policy == "FallbackToLogsOnError":
        message = logformat.tail_text(logformat.read_records(log_path))
    return message


class PodWorker:
    def __init__(self, ctx: AgentContext, pod: dict):
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.key = f"{self.namespace}/{self.name}"
        spec = pod.get("spec") or {}
        self.policy: str = spec.get("restartPolicy") or "Always"
        self.init_specs: list[dict] = list(spec.get("initContainers") or [])
        self.specs: list[dict] = list(spec.get("containers") or [])
        status = pod.get("status") or {}
        now = now_utc()
        init_tracks, lost_init = tracks_from_status(self.init_specs, status.get("initContainerStatuses"), now)
        tracks, lost = tracks_from_status(self.specs, status.get("containerStatuses"), now)
        self.lost = lost_init + lost  # containers an earlier agent run was running
        self.view = PodView(init_tracks=init_tracks, tracks=tracks, start_time=parse_time(status.get("startTime")))
        self.terminal_at_start = status.get("phase") in TERMINAL_PHASES
        self.pod_dir = ctx.pod_dir(self.uid)
        self.log_dir = ctx.log_dir(self.namespace, self.name, self.uid)

        self.procs: dict[str, ContainerProcess] = {}
        self.objects = ObjectSnapshot()
        self.tokens: dict[TokenSource, str] = {}
        self.token_expiry: float | None = None
        self.volume_dirs: dict[str, HostVolume] = {}

        self.finished = asyncio.Event()  # nothing will run any more; the final status is set
        self.deleting = False
        self.removed = False
        self._agent_stopping = False
        self._stopping = asyncio.Event()
        self._dirty = asyncio.Event()
        self._version = 0
        self._sent_version = 0
        self._sent = asyncio.Condition()
        self._last_sent: dict | None = None
        self._deadline: float | None = None
        self._tasks: list[asyncio.Task] = []
        self._run_task: asyncio.Task | None = None
        self._deadline_task: asyncio.Task | None = None
        self._last_event: dict[str, str] = {}

    # ------------------------------------------------------------ entry points (from the agent)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._run_task = loop.create_task(self._run(), name=f"pod {self.key}")
        self._tasks.append(loop.create_task(self._status_loop(), name=f"status {self.key}"))
        self.update(self.pod)

    def update(self, pod: dict) -> None:
        """A newer version of the pod object arrived from the watch."""
        if pod["metadata"].get("uid") != self.uid:
            return
        self.pod = pod
        if self._run_task is None:
            return
        self._schedule_deadline()
        if pod["metadata"].get("deletionTimestamp") and not self.deleting:
            self.deleting = True
            self._tasks.append(asyncio.get_running_loop().create_task(
                self._handle_deletion(), name=f"delete {self.key}"))

    async def gone(self) -> None:
        """The pod object no longer exists (deleted with grace 0 by us, or force-deleted)."""
        if self.removed:
            return
        self.removed = True
        if not self.finished.is_set():
            log.info("%s: pod object is gone; killing its processes", self.key)
            await self._terminate(FORCE_DELETE_GRACE)
            try:
                await asyncio.wait_for(self.finished.wait(), timeout=10)
            except TimeoutError:
                log.warning("%s: processes still finishing after the pod object vanished", self.key)
        for t in self._tasks + [self._run_task]:
            if t is not None and not t.done():
                t.cancel()
        remove_tree(self.pod_dir)

    async def shutdown(self, grace: float) -> None:
        """The agent is stopping, and its processes with it.

        A pod that never restarts cannot survive this: it ends Failed now, with a reason
        that says why. A pod that restarts keeps its last reported status; the next agent
        run finds its containers lost and restarts them, as kubelet does after a reboot.
        """
        if self.finished.is_set():
            return
        self._agent_stopping = True
        if self.policy == "Never":
            self.view.failure = self.view.failure or (
                "NodeAgentStopped", "The node agent stopped, and the pod's processes with it")
        else:
            for t in self._tasks:
                t.cancel()
        await self._terminate(grace)
        try:
            await asyncio.wait_for(self.finished.wait(), timeout=grace + 5)
            if self.policy == "Never":
                await self.flush_status(timeout=3)
        except TimeoutError:
            pass

    # ------------------------------------------------------------ queries (log server)

    def live_attempt(self, container: str) -> int | None:
        """The attempt of ``container`` that is still producing output, if any."""
        # a process stays in `procs` until its output is fully drained into the log file
        if self.procs.get(container) is None:
            return None
        track = self._track(container)
        return track.restart_count if track else None

    def waiting_reason(self, container: str) -> str | None:
        t = self._track(container)
        if t is None or t.waiting is None:
            return None
        return t.waiting[0]

    def container_names(self) -> list[str]:
        return [c["name"] for c in self.init_specs + self.specs]

    def _track(self, name: str) -> ContainerTrack | None:
        for t in self.view.init_tracks + self.view.tracks:
            if t.name == name:
                return t
        return None

    # ------------------------------------------------------------ the pod's run

    async def _run(self) -> None:
        if self.terminal_at_start:
            # Finished before this agent run: nothing to run, only deletion and logs to serve.
            self.finished.set()
            return
        try:
            if self.lost:
                log.warning("%s: containers %s were running under a previous agent run and are lost",
                            self.key, self.lost)
                self._event("ContainerStatusUnknown",
                            f"the node agent restarted; containers {', '.join(self.lost)} were lost",
                            warning=True)
            if self.view.start_time is None:
                self.view.start_time = now_utc()
            self._schedule_deadline()
            self.mark_dirty()
            sidecars = [c["name"] for c in self.init_specs if c.get("restartPolicy") == "Always"]
            if sidecars:
                # Better a clear failure than a pod stuck initializing behind a never-ending init container.
                self.view.failure = ("UnsupportedPodSpec", (
                    f"sidecar init containers (restartPolicy: Always) are not supported by the supercheck "
                    f"node agent: {', '.join(sidecars)}"))
                self._event("UnsupportedPodSpec", self.view.failure[1], warning=True)
                return
            if await self._prepare_sandbox() and await self._run_init_containers():
                for t in self.view.tracks:
                    if not t.ever_ran:
                        t.waiting = ("ContainerCreating", None)
                self.mark_dirty()
                await asyncio.gather(*(self._supervise(t, c, init=False)
                                       for t, c in zip(self.view.tracks, self.specs, strict=True)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours must still end the pod truthfully
            log.exception("%s: node agent error", self.key)
            if self.view.failure is None:
                self.view.failure = ("NodeAgentError", f"the node agent failed to run the pod: {exc}")
            await self._terminate(FORCE_DELETE_GRACE)
        finally:
            self._finalize()

    def _finalize(self) -> None:
        if self._stopping.is_set() or self.view.failure is not None:
            self.view.killed = True
            now = now_utc()
            mark_never_started(self.view.init_tracks, now)
            mark_never_started(self.view.tracks, now)
        self.view.sandbox_ready = False
        if self._deadline_task:
            self._deadline_task.cancel()
        self.finished.set()
        self.mark_dirty()
        if self._agent_stopping and self.policy != "Never":
            log.info("%s: containers stopped with the agent; they restart when it starts again", self.key)
        else:
            log.info("%s: finished (%s)", self.key, self._phase())

    def _phase(self) -> str:
        return build_pod_status(self.pod, self.view, previous_conditions=[], now=now_utc())["phase"]

    async def _terminate(self, grace: float, failure: tuple[str, str] | None = None) -> None:
        """Stop everything for good: no more starts or restarts, SIGTERM then SIGKILL after ``grace``."""
        if failure is not None and self.view.failure is None and not self.finished.is_set():
            self.view.failure = failure
        self._stopping.set()
        procs = list(self.procs.values())
        if procs:
            await asyncio.gather(*(p.stop(grace) for p in procs), return_exceptions=True)

    async def _wait_stopping(self, seconds: float) -> bool:
        """Sleep, waking early when the pod is being stopped; True if it is."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass
        return self._stopping.is_set()

    # ------------------------------------------------------------ deadline and deletion

    def _grace(self) -> float:
        meta, spec = self.pod["metadata"], self.pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(min(max(int(grace), 0), self.ctx.max_grace_seconds))

    def _schedule_deadline(self) -> None:
        ads = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        if ads is None or self.view.start_time is None or self.finished.is_set():
            return
        deadline = self.view.start_time.timestamp() + int(ads)
        if deadline == self._deadline:
            return
        self._deadline = deadline
        if self._deadline_task:
            self._deadline_task.cancel()
        self._deadline_task = asyncio.get_running_loop().create_task(self._deadline_timer(deadline))

    async def _deadline_timer(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.time()))
        if self.finished.is_set() or self._stopping.is_set():
            return
        log.info("%s: active deadline exceeded; stopping it", self.key)
        self._event(DEADLINE_REASON, DEADLINE_MESSAGE, warning=True)
        self.mark_dirty()
        spec = self.pod.get("spec") or {}
        grace = min(int(spec.get("terminationGracePeriodSeconds", 30)), self.ctx.max_grace_seconds)
        await self._terminate(grace, failure=(DEADLINE_REASON, DEADLINE_MESSAGE))

    async def _handle_deletion(self) -> None:
        if not self.finished.is_set():
            grace = self._grace()
            log.info("%s: deletion requested; stopping containers (grace %.0fs)", self.key, grace)
            for name in list(self.procs):
                self._event("Killing", f"Stopping container {name}", container=name)
            await self._terminate(grace)
            await self.finished.wait()
        await self.flush_status(timeout=10)
        # The final delete is what lets the object go: the API server waits for the node's word.
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": self.uid}}
        delay = 0.5
        while True:  # until it lands: otherwise the object would wait for this node forever
            try:
                await self.ctx.api.delete(path, body)
                log.info("%s: deleted", self.key)
                return
            except KubeError as exc:
                if exc.status in (404, 409):  # gone already, or a new pod with the same name
                    return
                log.warning("%s: final delete failed (%s); retrying in %.0fs", self.key, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    # ------------------------------------------------------------ volumes

    async def _prepare_sandbox(self) -> bool:
        """Fetch what the pod refers to and write its volumes; retry until it works or the pod stops."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await self._refresh_objects()
                await self._request_tokens()
                self.volume_dirs = await asyncio.get_running_loop().run_in_executor(None, self._write_volumes)
            except (VolumeError, KubeError) as exc:
                message = f"MountVolume.SetUp failed: {exc}"
                for t in self.view.init_tracks + self.view.tracks:
                    if not t.ever_ran:
                        t.waiting = ("ContainerCreating", message)
                self._event("FailedMount", message, warning=True)
                self.mark_dirty()
                if await self._wait_stopping(delay):
                    return False
                delay = min(delay * 2, SETUP_RETRY_MAX)
                continue
            self.view.sandbox_ready = True
            for t in self.view.init_tracks + self.view.tracks:
                if not t.ever_ran:
                    t.waiting = ("PodInitializing", None) if self.init_specs else ("ContainerCreating", None)
            if self.tokens:
                self._tasks.append(asyncio.get_running_loop().create_task(self._refresh_tokens_forever()))
            self.mark_dirty()
            return True
        return False

    async def _refresh_objects(self) -> None:
        cms, secrets = referenced_objects(self.pod)
        base = f"/api/v1/namespaces/{self.namespace}"
        cm_names, sec_names = sorted(cms), sorted(secrets)
        results = await asyncio.gather(
            *(self.ctx.api.get_or_none(f"{base}/configmaps/{n}") for n in cm_names),
            *(self.ctx.api.get_or_none(f"{base}/secrets/{n}") for n in sec_names))
        self.objects = ObjectSnapshot(dict(zip(cm_names, results[: len(cm_names)], strict=True)),
                                      dict(zip(sec_names, results[len(cm_names):], strict=True)))

    async def _request_tokens(self) -> None:
        sources = token_sources(self.pod)
        if not sources:
            return
        sa = (self.pod.get("spec") or {}).get("serviceAccountName") or "default"
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token"
        expiries = []
        for src in sources:
            body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"audiences": [src.audience] if src.audience else [],
                             "expirationSeconds": src.expiration_seconds,
                             "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                "name": self.name, "uid": self.uid}}}
            try:
                resp = await self.ctx.api.create(path, body)
            except KubeError as exc:
                raise VolumeError(f"failed to fetch token for service account {sa!r}: {exc.message}") from None
            self.tokens[src] = resp["status"]["token"]
            exp = parse_time(resp["status"].get("expirationTimestamp"))
            issued = time.time()
            ttl = (exp.timestamp() - issued) if exp else src.expiration_seconds
            expiries.append(issued + 0.8 * max(ttl, 60))  # kubelet refreshes at 80% of the lifetime
        self.token_expiry = min(expiries)

    def _write_volumes(self) -> dict[str, HostVolume]:
        dirs: dict[str, HostVolume] = {}
        for vol in (self.pod.get("spec") or {}).get("volumes") or []:
            plan = render_volume(vol, self.pod, self.objects, self.tokens, self.ctx.allocatable)
            path = materialize(plan, self.pod_dir / "volumes" / vol["name"], self._fs_group())
            dirs[vol["name"]] = HostVolume(str(path), read_only=isinstance(plan, FileSet) and plan.read_only)
        return dirs

    def _fs_group(self) -> int | None:
        return fs_group(self.pod) if self.ctx.switch_users else None

    async def _refresh_tokens_forever(self) -> None:
        while not self.finished.is_set():
            await asyncio.sleep(max(5.0, (self.token_expiry or time.time() + 600) - time.time()))
            if self.finished.is_set():
                return
            try:
                await self._request_tokens()
                for vol in (self.pod.get("spec") or {}).get("volumes") or []:
                    if vol.get("projected") and any(s.get("serviceAccountToken")
                                                    for s in vol["projected"].get("sources") or []):
                        plan = render_volume(vol, self.pod, self.objects, self.tokens, self.ctx.allocatable)
                        if isinstance(plan, FileSet):
                            write_files(self.pod_dir / "volumes" / vol["name"], plan.files, self._fs_group())
                log.info("%s: service account token refreshed", self.key)
            except (VolumeError, KubeError) as exc:
                log.warning("%s: token refresh failed: %s", self.key, exc)
                self.token_expiry = time.time() + 30

    # ------------------------------------------------------------ containers

    async def _run_init_containers(self) -> bool:
        for track, spec in zip(self.view.init_tracks, self.init_specs, strict=True):
            if track.succeeded:
                continue  # done in an earlier agent run
            await self._supervise(track, spec, init=True)
            if not track.succeeded:
                return False
        return True

    async def _supervise(self, track: ContainerTrack, spec: dict, *, init: bool) -> None:
        """Run a container, restarting it as the restart policy says, until it is done or stopped."""
        policy = init_restart_policy(self.policy) if init else self.policy
        backoff = Backoff()
        first = True
        ran_for = 0.0
        while not self._stopping.is_set():
            last = track.terminated or (track.last_terminated if track.waiting else None)
            if track.ever_ran and last is not None:
                if not should_restart(policy, last.exit_code):
                    return
                if not first:  # it crashed under us: back off (kubelet's CrashLoopBackOff)
                    delay = backoff.next(ran_for)
                    message = (f"back-off {delay:g}s restarting failed container={track.name} "
                               f"pod={self.name}_{self.namespace}({self.uid})")
                    track.set_waiting("CrashLoopBackOff", message)
                    self._event("BackOff", "Back-off restarting failed container " + track.name,
                                warning=True, container=track.name)
                    self.mark_dirty()
                    if await self._wait_stopping(delay):
                        return
            first = False
            started = time.monotonic()
            if not await self._run_attempt(track, spec):
                return
            ran_for = time.monotonic() - started

    async def _run_attempt(self, track: ContainerTrack, spec: dict) -> bool:
        """One attempt, from configuration to exit. False if the pod stopped before it could start."""
        name = spec["name"]
        delay = 0.5
        while True:
            if self._stopping.is_set():
                return False
            try:
                kube_env = container_env(self.pod, spec, self.objects, self.ctx.services, self.ctx.allocatable)
                argv = container_argv(spec, kube_env)
                attempt_no = track.restart_count + (1 if track.ever_ran else 0)
                attempt_dir = self.pod_dir / "containers" / name / str(attempt_no)
                term_file = attempt_dir / "termination-log"
                mounts = container_mounts(spec, self.volume_dirs, str(term_file), kube_env)
                identity = container_identity(self.pod, spec, switch_users=self.ctx.switch_users)
                break
            except (EnvError, MountError, IdentityError) as exc:
                if track.waiting != ("CreateContainerConfigError", str(exc)):
                    self._event("Failed", f"Error: {exc}", warning=True, container=name)
                track.set_waiting("CreateContainerConfigError", str(exc))
                self.mark_dirty()
                if await self._wait_stopping(delay):
                    return False
                delay = min(delay * 2, SETUP_RETRY_MAX)
                try:
                    await self._refresh_objects()
                except KubeError as kexc:
                    log.warning("%s: cannot re-read referenced objects: %s", self.key, kexc)

        attempt_dir.mkdir(parents=True, exist_ok=True)
        term_file.write_bytes(b"")
        term_file.chmod(0o666)  # kubelet's mode: any container user may write its termination message
        for src in subpath_sources(spec, self.volume_dirs, kube_env):
            if not Path(src).exists():  # kubelet creates a missing subPath as a directory
                Path(src).mkdir(parents=True, exist_ok=True)
        limits = (spec.get("resources") or {}).get("limits") or {}
        log_path = self.log_dir / name / f"{attempt_no}.log"
        image = spec.get("image", "")
        env = process_env(kube_env, self.ctx.inherited, self.name)
        home = home_for(identity, kube_env)
        if home is not None:
            env["HOME"] = home
        req = LaunchRequest(
            name=f"{self.key}/{name}", argv=argv, env=env,
            workdir=spec.get("workingDir") or "/", mounts=mounts, log_path=log_path,
            attempt_dir=attempt_dir,
            memory_limit=quantity_to_bytes(limits["memory"]) if limits.get("memory") else None,
            no_command_message=(f"no command specified: the node agent cannot run the default "
                                f"entrypoint of image {image!r}; set command (and args) in the pod spec"),
            identity=identity, cgroup_limits=limits_from_resources(spec.get("resources")),
            cgroup_name=f"{self.uid}_{name}_{attempt_no}")
        image_id = f"local://{image}"
        try:
            proc = await self.ctx.runtime.start(req)
        except OSError as exc:
            now = now_utc()
            track.restart_count = attempt_no
            track.finish(Attempt("", now, image_id, finished_at=now, exit_code=128, reason="StartError",
                                 message=f"failed to start the container process: {exc}"))
            self.mark_dirty()
            return True
        self.procs[name] = proc
        try:
            if self._stopping.is_set():
                proc.signal(9)
            failed = await proc.started()
            track.restart_count = attempt_no
            if failed is not None:
                code, message = failed
                info = await proc.wait()
                track.finish(Attempt(proc.container_id, proc.started_at, image_id, pid=proc.pid,
                                     finished_at=info.finished_at, exit_code=code, reason="StartError",
                                     message=message))
                self._event("Failed", f"Error: {message}", warning=True, container=name)
                log.info("%s/%s: could not start: %s", self.key, name, message)
            else:
                attempt = Attempt(proc.container_id, proc.started_at, image_id, pid=proc.pid)
                track.start(attempt)
                self.mark_dirty()
                self._event("Started", f"Started container {name}", container=name)
                info = await proc.wait()
                attempt.finished_at = info.finished_at
                attempt.exit_code = info.exit_code
                attempt.reason = terminated_reason(info.exit_code, info.oom_killed)
                attempt.message = termination_message(term_file, spec.get("terminationMessagePolicy"),
                                                      info.exit_code, log_path) or None
                track.finish(attempt)
                if info.oom_killed:
                    self._event("OOMKilled", f"Container {name} exceeded its memory limit "
                                f"({limits.get('memory')}) and was killed", warning=True, container=name)
                log.info("%s/%s: exited %d (%s)", self.key, name, info.exit_code, attempt.reason)
        finally:
            if self.procs.get(name) is proc:
                del self.procs[name]
            self.mark_dirty()
        return True

    # ------------------------------------------------------------ status

    def mark_dirty(self) -> None:
        self._version += 1
        self._dirty.set()

    async def flush_status(self, timeout: float) -> None:
        """Wait until the status as of now has reached the API server (or ``timeout``)."""
        target = self._version
        async with self._sent:
            try:
                await asyncio.wait_for(self._sent.wait_for(lambda: self._sent_version >= target), timeout)
            except TimeoutError:
                log.warning("%s: status not confirmed within %.0fs", self.key, timeout)

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self.removed:
                return
            if self.terminal_at_start:
                await self._mark_sent(self._version)
                continue
            version = self._version
            previous = self._last_sent.get("conditions") if self._last_sent else None
            status = build_pod_status(self.pod, self.view, previous_conditions=previous, now=now_utc())
            if status != self._last_sent:
                try:
                    await self.ctx.api.merge_patch(
                        f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
                        {"metadata": {"uid": self.uid}, "status": status})
                    self._last_sent = status
                except KubeError as exc:
                    if exc.status in (404, 409):
                        log.info("%s: status not written, the pod is gone (%s)", self.key, exc)
                        await self._mark_sent(version)
                        return
                    if exc.status == 422 and "metadata.uid" in exc.message:
                        log.info("%s: status not written, a new pod has this name", self.key)
                        await self._mark_sent(version)
                        return
                    if exc.status == 422:  # invalid: retrying the same status cannot help
                        log.error("%s: the API server rejected the pod status: %s", self.key, exc)
                        self._last_sent = status
                    else:
                        log.warning("%s: status update failed (%s); retrying", self.key, exc)
                        await asyncio.sleep(1)
                        self._dirty.set()
                        continue
            await self._mark_sent(version)

    async def _mark_sent(self, version: int) -> None:
        async with self._sent:
            self._sent_version = max(self._sent_version, version)
            self._sent.notify_all()

    # ------------------------------------------------------------ events

    def _event(self, reason: str, message: str, *, warning: bool = False, container: str | None = None) -> None:
        key = f"{reason}/{container}"
        if reason in ("FailedMount", "BackOff") and self._last_event.get(key) == message:
            return  # one Event per distinct problem, not one per retry
        self._last_event[key] = message
        self.ctx.events.pod_event(self.pod, reason, message, warning=warning, container=container)
