"""Kernel cgroup v1 limits for containers: the CPU quota and the memory limit a kubelet sets.

Each container attempt gets its own group in the ``cpu`` and the ``memory`` hierarchy, made by
the agent before the launcher starts and joined by the launcher before it execs the command
(so every process of the container is in it from the first instruction, and its children
inherit it). The kernel then does what it does on a real node: CFS throttles the container
at ``limits.cpu``, ``requests.cpu`` weighs it against the others, and the OOM killer acts at
``limits.memory`` (swap included, through ``memory.memsw``). Whether it acted is read back from
the group (``memory.oom_control``'s ``oom_kill``), not guessed from a memory poll.

Where the groups live: under the agent's own group in each hierarchy (``/proc/self/cgroup``),
in a folder of their own (``--cgroup-parent``); so whatever contains the agent contains its
containers too, and one agent never touches another's groups. A group is removed when its
container ends; at start the agent removes what a crashed run left (killing any process still
in it first).

The arithmetic is kubelet's (``pkg/kubelet/cm/helpers_linux.go``): quota = millicores x
period / 1000 with a 1 ms floor, period 100 ms; shares = millicores x 1024 / 1000, at least 2.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .quantity import parse_quantity, quantity_to_bytes

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "memory")
CFS_PERIOD_US = 100_000
MIN_QUOTA_US = 1_000
MIN_SHARES = 2
SHARES_PER_CPU = 1024
REMOVE_ATTEMPTS = 50


@dataclass(frozen=True)
class CgroupLimits:
    """What one container's groups are set to; None leaves the kernel's default (unlimited)."""

    cpu_quota_us: int | None = None
    cpu_period_us: int = CFS_PERIOD_US
    cpu_shares: int | None = None
    memory_bytes: int | None = None


def _millicores(value: str | int | float) -> int:
    return int(math.ceil(parse_quantity(value) * 1000))  # as resource.Quantity.MilliValue rounds


def limits_from_resources(resources: Mapping | None) -> CgroupLimits:
    """A container's ``resources`` as cgroup settings (kubelet's conversion, see the module doc)."""
    resources = resources or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    quota = None
    if limits.get("cpu") is not None:
        quota = max(_millicores(limits["cpu"]) * CFS_PERIOD_US // 1000, MIN_QUOTA_US)
    # The API server copies limits into unset requests; a pod without either gets the minimum.
    cpu_request = requests.get("cpu", limits.get("cpu"))
    shares = MIN_SHARES if cpu_request is None else max(
        _millicores(cpu_request) * SHARES_PER_CPU // 1000, MIN_SHARES)
    memory = quantity_to_bytes(limits["memory"]) if limits.get("memory") is not None else None
    return CgroupLimits(cpu_quota_us=quota, cpu_shares=shares, memory_bytes=memory)


class CgroupUnavailable(Exception):
    """cgroup v1 ``cpu``/``memory`` hierarchies are missing or not writable here."""


def _own_path(controller: str, proc_cgroup: str) -> str:
    """The agent's own group in ``controller``'s v1 hierarchy, from /proc/self/cgroup."""
    for line in proc_cgroup.splitlines():
        _, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if controller in names.split(","):
            return path or "/"
    raise CgroupUnavailable(f"no cgroup v1 {controller!r} hierarchy in /proc/self/cgroup")


def _write(path: Path, value: str | int) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read()


def _key_values(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


@dataclass(frozen=True)
class ContainerCgroup:
    """One container attempt's group in each hierarchy: ``{controller: directory}``."""

    name: str
    dirs: Mapping[str, Path]

    @property
    def procs_files(self) -> list[str]:
        """What the launcher writes its pid to, before it execs."""
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def pids(self) -> set[int]:
        out: set[int] = set()
        for d in self.dirs.values():
            try:
                out.update(int(p) for p in _read(d / "cgroup.procs").split())
            except OSError:
                pass
        return out

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this group."""
        d = self.dirs.get("memory")
        if d is None:
            return 0
        try:
            return _key_values(_read(d / "memory.oom_control")).get("oom_kill", 0)
        except OSError:
            return 0

    def stats(self) -> dict[str, int]:
        """Counters worth a log line (and a test): OOM kills, memory peak and failures, CPU throttling."""
        out: dict[str, int] = {}
        d = self.dirs.get("memory")
        if d is not None:
            out["oom_kill"] = self.oom_kills()
            for key in ("max_usage_in_bytes", "failcnt", "limit_in_bytes"):
                try:
                    out[f"memory_{key}"] = int(_read(d / f"memory.{key}"))
                except (OSError, ValueError):
                    pass
        d = self.dirs.get("cpu")
        if d is not None:
            try:
                out.update({f"cpu_{k}": v for k, v in _key_values(_read(d / "cpu.stat")).items()})
            except OSError:
                pass
        return out

    def kill_all(self) -> int:
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return len(pids)

    def remove(self) -> bool:
        """Remove the groups (killing what is still in them). Blocking: call off the event loop."""
        ok = True
        for attempt in range(REMOVE_ATTEMPTS):
            self.kill_all()
            ok = True
            for d in self.dirs.values():
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        log.warning("cannot remove cgroup %s: %s", d, exc)
                        return False
                    ok = False
            if ok:
                return True
            time.sleep(0.02 * (attempt + 1))
        log.warning("cgroup %s still has processes; left in place", self.name)
        return False


class CgroupManager:
    """Makes and finds the containers' groups under ``<agent's group>/<parent>`` in each hierarchy."""

    def __init__(self, parent: str = "supercheck-node-agent", root: Path = CGROUP_ROOT,
                 proc_cgroup: str | None = None):
        if proc_cgroup is None:
            proc_cgroup = _read(Path("/proc/self/cgroup"))
        self.parents: dict[str, Path] = {}
        self._bases: list[Path] = []
        for controller in CONTROLLERS:
            mount = root / controller
            if not (mount / "cgroup.procs").exists():
                raise CgroupUnavailable(f"{mount} is not a cgroup v1 hierarchy")
            own = _own_path(controller, proc_cgroup).strip("/")
            base = mount / own if own else mount
            parent_dir = base / parent
            try:
                parent_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CgroupUnavailable(f"cannot create {parent_dir}: {exc.strerror}") from None
            if not os.access(parent_dir, os.W_OK):
                raise CgroupUnavailable(f"{parent_dir} is not writable")
            self.parents[controller] = parent_dir
            self._bases.append(base)
        self.has_memsw = (self.parents["memory"] / "memory.memsw.limit_in_bytes").exists()

    def describe(self) -> str:
        return ", ".join(str(p) for p in self.parents.values())

    def group(self, name: str) -> ContainerCgroup:
        return ContainerCgroup(name, {c: p / name for c, p in self.parents.items()})

    def create(self, name: str, limits: CgroupLimits) -> ContainerCgroup:
        """Make the groups and write the limits; a leftover group of the same name is replaced."""
        cg = self.group(name)
        if any(d.exists() for d in cg.dirs.values()):
            cg.remove()
        try:
            for d in cg.dirs.values():
                d.mkdir()
            cpu, memory = cg.dirs["cpu"], cg.dirs["memory"]
            _write(cpu / "cpu.cfs_period_us", limits.cpu_period_us)
            if limits.cpu_quota_us is not None:
                _write(cpu / "cpu.cfs_quota_us", limits.cpu_quota_us)
            if limits.cpu_shares is not None:
                _write(cpu / "cpu.shares", limits.cpu_shares)
            if limits.memory_bytes is not None:
                # memsw (memory + swap) must stay >= the memory limit: memory first, then memsw.
                _write(memory / "memory.limit_in_bytes", limits.memory_bytes)
                if self.has_memsw:
                    _write(memory / "memory.memsw.limit_in_bytes", limits.memory_bytes)
        except OSError:
            cg.remove()
            raise
        return cg

    def close(self) -> None:
        """Remove the (empty) parent folders, so nothing of the agent is left in its own group's tree."""
        self.remove_stale()
        for parent, base in zip(self.parents.values(), self._bases, strict=True):
            folder = parent
            while folder != base:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
                folder = folder.parent

    def remove_stale(self) -> int:
        """Remove every group under the parents (a previous agent run's); returns how many."""
        names: set[str] = set()
        for parent in self.parents.values():
            try:
                names.update(e.name for e in os.scandir(parent) if e.is_dir())
            except OSError:
                pass
        for name in sorted(names):
            self.group(name).remove()
        return len(names)
