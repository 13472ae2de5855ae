"""Finding, measuring and killing all processes of one container.

A container is the process the launcher became plus everything it spawned. Two marks
identify its members, so that neither a ``setsid`` (new process group) nor a double fork
(re-parented orphan) lets a process escape:

* its process group (the launcher starts in a new session: pgid == its pid), and
* its private mount namespace (the launcher unshares one; every descendant inherits it).

The agent's own mount namespace is never used as a mark: just after spawn, before the
launcher's ``unshare``, the child still shares it.

A mount namespace is named by its inode number, and the kernel hands a freed number to the
next namespace created (lowest free id): once a container's last process exits, the very
next launcher's ``unshare`` typically gets the same number. So the number only identifies a
container while the agent holds the namespace open (:func:`pin_mount_ns`); killing "every
process in namespace N" after it was released would kill another container.
"""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import dataclass

import psutil

PR_SET_CHILD_SUBREAPER = 36


def mount_ns(pid: int | str) -> int | None:
    try:
        link = os.readlink(f"/proc/{pid}/ns/mnt")  # "mnt:[4026531841]"
    except OSError:
        return None
    return int(link[5:-1])


AGENT_MNT_NS = mount_ns("self")


def pin_mount_ns(pid: int) -> tuple[int, int] | None:
    """Open ``pid``'s mount namespace: ``(fd, inode number)``, or None if it is gone.

    While the fd stays open the namespace cannot be freed, so its number cannot be given to
    a new namespace: that is what makes the number a safe mark for as long as it is used.
    The fd is close-on-exec (containers never inherit it).
    """
    try:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return fd, os.fstat(fd).st_ino
    except OSError:
        os.close(fd)
        return None


@dataclass
class ProcSnapshot:
    """One pass over /proc: pids by mount namespace and by process group."""

    by_ns: dict[int, list[int]]
    by_pgid: dict[int, list[int]]

    @classmethod
    def take(cls) -> ProcSnapshot:
        by_ns: dict[int, list[int]] = {}
        by_pgid: dict[int, list[int]] = {}
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid == me:
                continue
            ns = mount_ns(pid)
            if ns is not None:
                by_ns.setdefault(ns, []).append(pid)
            try:
                by_pgid.setdefault(os.getpgid(pid), []).append(pid)
            except OSError:
                pass
        return cls(by_ns, by_pgid)

    def members(self, pgid: int, ns: int | None) -> set[int]:
        pids = set(self.by_pgid.get(pgid, [])) if pgid > 1 and pgid != os.getpgid(0) else set()
        if ns is not None and ns != AGENT_MNT_NS:
            pids.update(self.by_ns.get(ns, []))
        pids.discard(os.getpid())
        return pids


def tree_rss(pids: set[int]) -> int:
    """Resident memory of a container's processes, as psutil measures it.

    Each process counts its PSS (resident pages, a shared page split between the processes
    that map it) rather than its plain RSS: summing RSS over a multi-process program such as
    Chromium counts its shared libraries once per process and would "OOM-kill" a browser
    well under its limit. A kernel cgroup charges a page once too. Falls back to RSS where
    PSS cannot be read.
    """
    total = 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            try:
                total += proc.memory_full_info().pss
            except (AttributeError, psutil.AccessDenied, OSError):
                total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass
    return total


def signal_members(pgid: int, ns: int | None, sig: int, snapshot: ProcSnapshot | None = None) -> int:
    """Send ``sig`` to the container's process group and every process in its mount namespace."""
    snap = snapshot or ProcSnapshot.take()
    members = snap.members(pgid, ns)
    for pid in members:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    if pgid > 1 and pgid != os.getpgid(0):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return len(members)


def exit_code_from_status(status: int) -> int:
    """A wait status as the container runtime reports it: 128+N when killed by signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + signal.SIGKILL


def become_subreaper() -> bool:
    """Orphans of containers re-parent to the agent (which reaps them) instead of piling
    up as zombies under this machine's PID 1, which does not reap."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def process_create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
