"""The container runtime: containers as local process trees.

:meth:`ContainerRuntime.start` spawns ``launcher.py`` (which makes the mount namespace
and execs the command) in a new session, pumps its stdout/stderr into a CRI log file,
and hands back a :class:`ContainerProcess` to wait on, signal or stop.

Why the pieces look the way they do:
* ``os.posix_spawn`` and one reaper thread calling ``waitpid(-1)`` instead of asyncio's
  child watcher: the agent is a child subreaper (orphans of containers come to it instead
  of becoming zombies under this machine's PID 1, which never reaps), so it must reap
  every child, not only the ones asyncio knows about.
* each container attempt gets its own cgroup v1 ``cpu`` and ``memory`` groups
  (``cgroups.py``), joined by the launcher before it execs: the kernel throttles the CPU and
  OOM-kills at the memory limit, and the group's ``oom_kill`` counter says it happened. Only
  where cgroups are unavailable (or turned off) does the monitor task below enforce memory
  limits, by sampling every container's process tree each 250 ms and killing it over the limit.
* the launcher runs the command as the container's user (``identity.py``), a non-root one in
  a PID namespace of its own (the pid the agent waits on stays outside it).
* ``processes.json`` in the state dir lists what is running, so a restarted agent can
  kill what a crashed one left behind ("adopt nothing").
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import logformat
from .cgroups import CgroupLimits, CgroupManager, ContainerCgroup
from .identity import ROOT, ContainerIdentity
from .mounts import BindMount
from .proctree import (
    AGENT_MNT_NS,
    ProcSnapshot,
    exit_code_from_status,
    pin_mount_ns,
    process_create_time,
    signal_members,
    tree_rss,
)

log = logging.getLogger(__name__)

LAUNCHER = str(Path(__file__).with_name("launcher.py"))
SAMPLE_INTERVAL = 0.25
START_TIMEOUT = 30.0
LOG_DRAIN_TIMEOUT = 2.0


@dataclass
class LaunchRequest:
    name: str  # "<namespace>/<pod>/<container>", for log messages
    argv: list[str]
    env: dict[str, str]
    workdir: str
    mounts: list[BindMount]
    log_path: Path
    attempt_dir: Path
    memory_limit: int | None = None
    no_command_message: str = ""
    identity: ContainerIdentity = ROOT
    cgroup_limits: CgroupLimits | None = None  # None: no CPU/memory limits, only the group
    cgroup_name: str | None = None  # unique per attempt; None: made up


@dataclass
class ExitInfo:
    exit_code: int
    finished_at: datetime
    oom_killed: bool = False
    cgroup_stats: dict[str, int] | None = None  # the group's counters as the container ended


def _high_fd(fd: int) -> int:
    """Move a pipe end above the fds posix_spawn rewires (0-3), keeping it close-on-exec."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


async def _pipe_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                 os.fdopen(fd, "rb", buffering=0))
    return reader


def host_paths(path_var: str, browsers: str = "") -> list[str]:
    """The host folders that stand in for a container image's own files: the agent's working
    directory (the checkout), its Python installation, the command search path and Playwright's
    browsers (when PLAYWRIGHT_BROWSERS_PATH names them). The launcher shows them again inside the
    container when a volume would hide them (a pod's emptyDir at /tmp hides a checkout that lives
    under /tmp), or when a non-root user could not reach them (pyenv under /root); a real image is
    never hidden by a volume mounted on another of its folders."""
    paths = [os.getcwd(), sys.prefix, sys.base_prefix, *path_var.split(":"), browsers]
    return sorted({os.path.realpath(p) for p in paths if p and os.path.isabs(p)})


class _Reaper:
    """Reaps every child of the agent; resolves the waiters of the ones it spawned."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, Callable[[int], None]] = {}
        self._spawned = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
        self._thread.start()

    def spawn(self, do_spawn: Callable[[], int], on_exit: Callable[[int], None]) -> int:
        # Holding the lock across spawn+register: a child that dies at once is reaped by the
        # thread below, which then waits for the lock, so its waiter is always found.
        with self._lock:
            pid = do_spawn()
            self._waiters[pid] = on_exit
        self._spawned.set()
        return pid

    def _run(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                self._spawned.wait(1.0)
                self._spawned.clear()
                continue
            except InterruptedError:
                continue
            with self._lock:
                cb = self._waiters.pop(pid, None)
            if cb is not None:
                cb(status)


class ContainerProcess:
    """One attempt of a container: the launcher's pid (later the command itself)."""

    def __init__(self, runtime: ContainerRuntime, req: LaunchRequest, pid: int,
                 exit_future: asyncio.Future, log_file, pumps: list[asyncio.Task],
                 start_reader: asyncio.StreamReader, cgroup: ContainerCgroup | None = None):
        self.runtime = runtime
        self.req = req
        self.pid = pid
        self.pgid = pid  # new session: the launcher leads its own process group
        self.container_id = f"local://{pid}"
        self.started_at = datetime.now(UTC).replace(microsecond=0)
        self.create_time = process_create_time(pid) or time.time()
        self.memory_limit = req.memory_limit
        self.cgroup = cgroup  # when set, the kernel enforces the limits and memory_limit is not polled
        # The container's mount namespace, held open by ``_ns_fd`` for as long as ``mnt_ns`` is
        # set: its inode number is a mark of this container only while we pin it (proctree.py).
        self.mnt_ns: int | None = None
        self._ns_fd: int | None = None
        self._ns_released = False
        self._ns_lock = threading.Lock()  # captured from the loop and from the sampling thread
        self.oom_killed = False
        self.peak_rss = 0
        self._exit_future = exit_future
        self._log_file = log_file
        self._pumps = pumps
        self._start_reader = start_reader
        self._start_result: tuple[int, str] | None | bool = False  # False: not known yet
        self._exit_info: ExitInfo | None = None
        self._finishing: asyncio.Task | None = None

    @property
    def exited(self) -> bool:
        return self._exit_future.done()

    async def started(self) -> tuple[int, str] | None:
        """None once the command is exec'd; ``(exit code, message)`` when it could not start."""
        if self._start_result is False:
            try:
                data = await asyncio.wait_for(self._start_reader.read(), START_TIMEOUT)
            except TimeoutError:
                self.signal(signal.SIGKILL)
                data = b"128 the container did not start within %d s" % START_TIMEOUT
            text = data.decode("utf-8", "replace").strip()
            if text:
                code, _, message = text.partition(" ")
                self._start_result = (int(code) if code.isdigit() else 128, message)
            else:
                self._start_result = None
                self.started_at = datetime.now(UTC).replace(microsecond=0)
                self.capture_namespace()
        return self._start_result  # type: ignore[return-value]

    def capture_namespace(self) -> None:
        with self._ns_lock:
            if self.mnt_ns is not None or self._ns_released or self.exited:
                return
            pinned = pin_mount_ns(self.pid)
            if pinned is None:
                return
            fd, ns = pinned
            # Not yet unshared (still the agent's namespace), or the pid is no longer our
            # launcher (exited and reused): checked after opening, so the fd is ours if this holds.
            if ns == AGENT_MNT_NS or process_create_time(self.pid) != self.create_time:
                os.close(fd)
                return
            self._ns_fd, self.mnt_ns = fd, ns
        self.runtime._save_registry()

    def _release_namespace(self) -> None:
        """Stop using the mount namespace as a mark, then let it go (its number may be reused)."""
        with self._ns_lock:
            self._ns_released = True
            self.mnt_ns = None
            fd, self._ns_fd = self._ns_fd, None
        if fd is not None:
            os.close(fd)

    def signal(self, sig: int) -> None:
        if self._exit_info is not None:
            return
        signal_members(self.pgid, self.mnt_ns, sig)
        if self.cgroup is not None:  # the surest mark of all: no process leaves its cgroup
            for pid in self.cgroup.pids():
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    async def wait(self) -> ExitInfo:
        if self._finishing is None:
            self._finishing = asyncio.ensure_future(self._finish())
        return await asyncio.shield(self._finishing)

    async def _finish(self) -> ExitInfo:
        status = await self._exit_future
        finished = datetime.now(UTC).replace(microsecond=0)
        try:
            # A container ends with its main process (as a PID namespace does): kill what is
            # left. The namespace is still pinned here, so this cannot reach another container.
            signal_members(self.pgid, self.mnt_ns, signal.SIGKILL)
            if self.cgroup is not None:
                self.cgroup.kill_all()
        finally:
            self._release_namespace()
        done, pending = await asyncio.wait(self._pumps, timeout=LOG_DRAIN_TIMEOUT)
        for t in pending:
            t.cancel()
        try:
            self._log_file.close()
        except OSError:
            pass
        stats = None
        if self.cgroup is not None:
            # The kernel's word (containerd's rule): any OOM kill in the group makes the container
            # OOMKilled, with the exit code its main process really had.
            stats = self.cgroup.stats()
            if stats.get("oom_kill", 0) > 0:
                log.info("%s: the kernel's OOM killer ended %d process(es) at the memory limit %s",
                         self.req.name, stats["oom_kill"], stats.get("memory_limit_in_bytes"))
                self.oom_killed = True
            await asyncio.get_running_loop().run_in_executor(None, self.cgroup.remove)
        code = 137 if self.oom_killed and self.cgroup is None else exit_code_from_status(status)
        self._exit_info = ExitInfo(code, finished, self.oom_killed, stats)
        self.runtime._forget(self)
        return self._exit_info

    async def stop(self, grace: float) -> ExitInfo:
        """SIGTERM the whole tree, SIGKILL it after ``grace`` seconds."""
        if not self.exited:
            self.signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._exit_future), timeout=max(grace, 0))
            except TimeoutError:
                log.info("%s did not stop within %.0fs of SIGTERM; SIGKILL", self.req.name, grace)
                self.signal(signal.SIGKILL)
        return await self.wait()


class ContainerRuntime:
    """``cgroups``: where containers get their kernel limits; None: memory limits by sampling."""

    def __init__(self, state_dir: Path, cgroups: CgroupManager | None = None, hidden_paths: tuple[str, ...] = (),
                 pid_namespaces: bool = True):
        self.state_dir = state_dir
        self.cgroups = cgroups
        self.hidden_paths = hidden_paths  # covered for non-root containers (the launcher's "hide")
        self.pid_namespaces = pid_namespaces  # a PID namespace of its own for each non-root container
        self.registry_path = state_dir / "processes.json"
        self._procs: dict[int, ContainerProcess] = {}
        self._reaper: _Reaper | None = None
        self._monitor: asyncio.Task | None = None
        self._registry_lock = threading.Lock()  # written from the loop and the sampling thread

    # ------------------------------------------------------------ lifecycle

    def start_background(self) -> None:
        self._reaper = _Reaper()
        self._monitor = asyncio.get_running_loop().create_task(self._monitor_loop(), name="monitor")

    async def close(self, grace: float) -> None:
        await self.stop_all(grace)
        if self._monitor:
            self._monitor.cancel()
        if self.cgroups is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.cgroups.close)

    async def stop_all(self, grace: float) -> None:
        procs = list(self._procs.values())
        if procs:
            log.info("stopping %d container(s)", len(procs))
            await asyncio.gather(*(p.stop(grace) for p in procs), return_exceptions=True)

    def running(self) -> list[ContainerProcess]:
        return list(self._procs.values())

    # ------------------------------------------------------------ starting

    async def start(self, req: LaunchRequest) -> ContainerProcess:
        assert self._reaper is not None, "start_background() first"
        loop = asyncio.get_running_loop()
        req.attempt_dir.mkdir(parents=True, exist_ok=True)
        req.log_path.parent.mkdir(parents=True, exist_ok=True)
        cgroup = None
        if self.cgroups is not None:
            try:
                cgroup = await loop.run_in_executor(None, self.cgroups.create, req.cgroup_name or uuid.uuid4().hex,
                                                    req.cgroup_limits or CgroupLimits())
            except OSError as exc:  # the container still runs, as it would have before cgroups
                log.warning("%s: cannot make its cgroups (%s): no CPU limit, memory limit sampled", req.name, exc)
        spec_path = req.attempt_dir / "launch.json"
        try:
            fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"argv": req.argv, "workdir": req.workdir, "agentPid": os.getpid(),
                           "mounts": [m.to_json() for m in req.mounts],
                           "hostPaths": host_paths(req.env.get("PATH", ""),
                                                   req.env.get("PLAYWRIGHT_BROWSERS_PATH", "")),
                           "identity": req.identity.to_json(), "hide": list(self.hidden_paths),
                           "pidNamespace": self.pid_namespaces and not req.identity.is_root,
                           "cgroupProcs": cgroup.procs_files if cgroup else [],
                           "noCommandMessage": req.no_command_message}, f)
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise

        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        st_r, st_w = os.pipe()
        out_w, err_w, st_w = _high_fd(out_w), _high_fd(err_w), _high_fd(st_w)
        exit_future: asyncio.Future = loop.create_future()

        def on_exit(status: int) -> None:  # reaper thread
            def settle() -> None:
                if not exit_future.done():
                    exit_future.set_result(status)
            loop.call_soon_threadsafe(settle)

        argv = [sys.executable, "-I", "-S", LAUNCHER, str(spec_path)]
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2),
                   (os.POSIX_SPAWN_DUP2, st_w, 3)]
        try:
            pid = self._reaper.spawn(
                lambda: os.posix_spawn(sys.executable, argv, req.env, file_actions=actions, setsid=True),
                on_exit)
        except BaseException:
            for fd_ in (out_r, err_r, st_r):
                os.close(fd_)
            if cgroup is not None:
                cgroup.remove()
            raise
        finally:
            for fd_ in (out_w, err_w, st_w):
                os.close(fd_)

        log_file = open(req.log_path, "ab", buffering=0)
        out_reader, err_reader, st_reader = (await _pipe_reader(out_r), await _pipe_reader(err_r),
                                             await _pipe_reader(st_r))
        pumps = [loop.create_task(self._pump(out_reader, "stdout", log_file)),
                 loop.create_task(self._pump(err_reader, "stderr", log_file))]
        proc = ContainerProcess(self, req, pid, exit_future, log_file, pumps, st_reader, cgroup)
        self._procs[pid] = proc
        self._save_registry()
        return proc

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, stream: str, log_file) -> None:
        splitter = logformat.LineSplitter()
        while True:
            chunk = await reader.read(65536)
            records = splitter.feed(chunk) if chunk else splitter.flush()
            if records:
                ts = logformat.now_ns()
                log_file.write(b"".join(logformat.encode_record(ts, stream, c, p) for c, p in records))
            if not chunk:
                return

    def _forget(self, proc: ContainerProcess) -> None:
        if self._procs.pop(proc.pid, None) is not None:
            self._save_registry()

    # ------------------------------------------------------------ memory limits without cgroups

    async def _monitor_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            procs = [p for p in self._procs.values() if not p.exited and (p.mnt_ns is None or p.cgroup is None)]
            if not procs:
                continue
            try:
                await loop.run_in_executor(None, self._sample, procs)
            except Exception:  # a sampling hiccup must not stop enforcement for good
                log.exception("process sampling failed")

    @staticmethod
    def _sample(procs: list[ContainerProcess]) -> None:
        # `ns` is read once: a number read while the container pins its namespace names that
        # namespace only, even if _finish releases it a moment later (the snapshot's pids under
        # that number are then the container's, or dead ones of a namespace freed before).
        snap = ProcSnapshot.take()
        for p in procs:
            if p.mnt_ns is None:
                p.capture_namespace()
            ns = p.mnt_ns
            if not p.memory_limit or p.exited or p.cgroup is not None:
                continue
            rss = tree_rss(snap.members(p.pgid, ns))
            p.peak_rss = max(p.peak_rss, rss)
            if rss > p.memory_limit and not p.oom_killed:
                log.info("%s: memory %d bytes over its limit %d: OOMKilled", p.req.name, rss, p.memory_limit)
                p.oom_killed = True
                signal_members(p.pgid, ns, signal.SIGKILL, snap)

    # ------------------------------------------------------------ leftovers of a previous run

    def _save_registry(self) -> None:
        entries = {p.container_id: {"pid": p.pid, "pgid": p.pgid, "createTime": p.create_time,
                                    "mntNs": p.mnt_ns, "name": p.req.name,
                                    "cgroups": [str(d) for d in p.cgroup.dirs.values()] if p.cgroup else []}
                   for p in list(self._procs.values())}
        tmp = self.registry_path.with_suffix(".tmp")
        with self._registry_lock:
            try:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(entries, indent=1))
                os.replace(tmp, self.registry_path)
            except OSError as exc:
                log.warning("cannot write %s: %s", self.registry_path, exc)

    def kill_leftovers(self) -> int:
        """Kill the containers a previous agent run left behind. Returns how many were found."""
        try:
            entries = json.loads(self.registry_path.read_text())
        except (OSError, ValueError):
            return 0
        found = 0
        snap = ProcSnapshot.take()
        for cid, e in entries.items():
            pid, created = int(e["pid"]), float(e.get("createTime") or 0)
            alive = process_create_time(pid)
            main_is_ours = alive is not None and abs(alive - created) < 1.0
            ns = e.get("mntNs")
            # the process group only counts while its leader is provably ours (pids get reused)
            members = snap.members(int(e["pgid"]) if main_is_ours else 0, ns)
            if main_is_ours:
                members.add(pid)
            if members:
                found += 1
                log.info("killing %d leftover process(es) of %s (%s) from a previous agent run",
                         len(members), e.get("name"), cid)
                for m in members:
                    try:
                        os.kill(m, signal.SIGKILL)
                    except OSError:
                        pass
            left = ContainerCgroup(cid, {str(i): Path(d) for i, d in enumerate(e.get("cgroups") or [])})
            if left.dirs and any(d.exists() for d in left.dirs.values()):
                left.remove()  # kills what is still in it (however it got away), then removes it
        self.registry_path.unlink(missing_ok=True)
        if self.cgroups is not None:
            stale = self.cgroups.remove_stale()
            if stale:
                log.info("removed %d cgroup(s) left by a previous agent run", stale)
        return found
