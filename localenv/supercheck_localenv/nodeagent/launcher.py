"""Becomes a container's process: private mount namespace, bind mounts, chdir, exec.

Run by the agent as ``python -I -S launcher.py SPEC.json`` in a new session, with the
container's environment, stdout/stderr already on the log pipes and fd 3 the "start
pipe". Standard library only and no package import, so it starts in milliseconds.

Protocol with the agent (containers.py): fd 3 is close-on-exec here, so a successful
``execve`` closes it and the agent reads EOF = "the container started". On any failure
the launcher writes one line "<exit code> <message>" to fd 3 and exits with that code:
127 when the command does not exist (what a shell reports), 128 for other start errors.

In order, as runc does it: join the container's cgroups (before anything else, so every
process of the container is in them), make the mount namespace and the mounts, create the
working directory (as root), make the root filesystem read-only if asked, then become the
container's user (groups, gid, uid, ``no_new_privs``), change directory and exec.

A non-root container must still find what stands in for its image (the interpreter, the
checkout, PATH) where the agent finds it, even when a folder on the way is closed to it
(pyenv's Python under /root, mode 0700): such a folder is covered with an empty read-only
tmpfs and only the image paths under it are bind-mounted back. So the container sees the
programs an image would give it and nothing else of that folder (not root's kubeconfig).
"""

import ctypes
import errno
import json
import os
import signal
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
START_FD = 3
MASK_OPTIONS = "mode=755,size=1m"
SHM_OPTIONS = "mode=1777,size=65536k"  # a pod's own /dev/shm, runc's default size

_libc = ctypes.CDLL(None, use_errno=True)


def fail(code, message):
    try:
        os.write(START_FD, f"{code} {message}\n".encode("utf-8", "replace"))
    finally:
        os._exit(code)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, flags, fstype=None, data=None):
    _check(_libc.mount(source.encode() if source else None, target.encode(),
                       fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                       data.encode() if data else None), f"mount {source or ''} on {target}")


def can_search(st, identity):
    """Whether ``identity`` may pass through a folder with this stat (the x bit that applies)."""
    uid, gids = identity["uid"], {identity["gid"], *identity.get("groups", [])}
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def closed_ancestor(path, identity):
    """The topmost folder above ``path`` that ``identity`` cannot pass through, or None."""
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts)):
        ancestor = "/" + "/".join(parts[:i])
        try:
            if not can_search(os.stat(ancestor), identity):
                return ancestor
        except OSError:
            return None
    return None


def masks_for(host_paths, identity):
    """Folders to cover so that a non-root ``identity`` reaches ``host_paths`` (outermost only)."""
    found = sorted({a for p in host_paths if (a := closed_ancestor(p, identity)) and a != "/"})
    return [m for m in found if not hidden_by(m, [o for o in found if o != m])]


def prepare_target(is_dir, target):
    """The mount point must exist: a directory for a directory, an (empty) file for a file."""
    if is_dir:
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        with open(target, "ab"):
            pass


def hidden_by(path, targets):
    return any(path.startswith(t.rstrip("/") + "/") for t in targets)


def set_up_mounts(mounts, host_paths, identity, hide=()):
    """Cover the folders a non-root user cannot pass, bind every volume at its mount path, then
    show again the host folders a volume or a cover hid.

    Sources and host folders are opened (O_PATH) before anything is mounted and mounted
    through /proc/self/fd: an earlier mount (say an emptyDir at /tmp) may hide the path of
    a later source (a node-agent state directory under /tmp) or of the command itself.
    """
    opened = [os.open(m["source"], os.O_PATH | os.O_CLOEXEC) for m in mounts]
    kept = []
    for p in host_paths:
        try:
            kept.append((p, os.open(p, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)))
        except OSError:
            pass
    masks = masks_for([p for p, _ in kept], identity)
    if identity["uid"] != 0:  # the host's secrets (the local environment's .dev) are no image's files
        wanted = sorted(set(masks) | {h for h in hide if os.path.isdir(h)})
        masks = [m for m in wanted if not hidden_by(m, [o for o in wanted if o != m])]
    for m in masks:
        mount("tmpfs", m, MS_NOSUID | MS_NODEV, "tmpfs", MASK_OPTIONS)
    if identity["uid"] != 0:  # the pod's own /dev/shm, not the one every other pod writes to
        mount("shm", "/dev/shm", MS_NOSUID | MS_NODEV, "tmpfs", SHM_OPTIONS)
    targets = []
    for m, fd in zip(mounts, opened, strict=True):
        prepare_target(os.path.isdir(f"/proc/self/fd/{fd}"), m["target"])
        mount(f"/proc/self/fd/{fd}", m["target"], MS_BIND | MS_REC)
        targets.append(m["target"])
    shown = []
    for p, fd in kept:
        if hidden_by(p, targets + masks) and not hidden_by(p, shown):
            os.makedirs(p, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", p, MS_BIND | MS_REC)
            shown.append(p)
    for m in mounts:  # after all binds, so mount points inside read-only volumes can still be made
        if m.get("readOnly"):
            mount(None, m["target"], MS_BIND | MS_REMOUNT | MS_RDONLY)
    for m in masks:
        mount(None, m, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for fd in opened + [fd for _, fd in kept]:
        os.close(fd)


def join_cgroups(procs_files):
    pid = str(os.getpid()).encode()
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)


def exit_code(status):
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def ignore_signals():
    """A supervisor's signals: the agent signals the container's processes itself (by process
    group, mount namespace and cgroup), so passing them on would deliver them twice."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)


def wait_for(child):
    """Wait for ``child`` (reaping any other child meanwhile: an init reaps orphans) and end
    with its exit code."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(137)
        if pid == child:
            os._exit(exit_code(status))


def enter_pid_namespace(identity):
    """The container's own PID namespace, as on a real node: its processes see only each other
    in /proc (another pod's environment is out of reach even under the same uid).

    Three processes, like a runtime plus tini: this one stays outside and is what the agent
    waits on; its child is PID 1 inside (mounts the namespace's /proc, then runs as the
    container's user, as tini does in our image, reaps orphans, ends with the command); PID 1's
    child goes on to become the command, as PID 2, so signals reach it with their usual effect
    (a PID 1 ignores a SIGTERM it has no handler for).
    """
    _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    init = os.fork()
    if init:
        os.close(START_FD)
        ignore_signals()
        wait_for(init)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the namespace ends with the one outside
    mount("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "proc")
    command = os.fork()
    if command:
        os.close(START_FD)
        ignore_signals()
        try:
            become(identity, 0)  # its parent is outside the namespace: getppid() says 0
        except OSError:
            pass  # the command's own switch reports it
        wait_for(command)
    return 1  # the command's parent, as it sees it


def become(identity, parent_pid):
    """Switch to the container's user for good (and keep dying with the agent, or with the PID
    namespace's init: changing credentials clears the parent-death signal)."""
    if identity["uid"] != 0 or identity["gid"] != 0 or identity.get("groups"):  # root as it is: unchanged
        os.setgroups(identity.get("groups") or [])
        os.setresgid(identity["gid"], identity["gid"], identity["gid"])
        os.setresuid(identity["uid"], identity["uid"], identity["uid"])
    if identity.get("noNewPrivs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(137)


def find_executable(name, path_var, workdir):
    """What execvp would run, with Go's (runc's) wording when nothing is found."""
    if "/" in name:
        path = name if os.path.isabs(name) else os.path.join(workdir, name)
        try:
            st = os.stat(path)
        except OSError as exc:
            fail(127, f'exec: "{name}": stat {path}: {os.strerror(exc.errno)}')
        if stat.S_ISDIR(st.st_mode) or not os.access(path, os.X_OK):
            fail(126, f'exec: "{name}": permission denied')
        return path
    for d in (path_var or "").split(":"):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    fail(127, f'exec: "{name}": executable file not found in $PATH')


def main():
    os.set_inheritable(START_FD, False)  # closes on exec: EOF tells the agent we started
    spec_path = sys.argv[1]
    with open(spec_path) as f:
        spec = json.load(f)
    os.unlink(spec_path)

    # Die with the agent: processes never outlive the node agent that started them.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != spec["agentPid"]:
        os._exit(137)

    try:
        join_cgroups(spec.get("cgroupProcs") or [])
    except OSError as exc:
        fail(128, f"failed to join the container's cgroup: {exc.strerror or exc}: {exc.filename or ''}")

    identity = spec.get("identity") or {"uid": 0, "gid": 0}
    mounts = spec.get("mounts") or []
    try:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        mount(None, "/", MS_REC | MS_PRIVATE)  # nothing we mount leaks back to the host
        set_up_mounts(mounts, spec.get("hostPaths") or [], identity, spec.get("hide") or [])
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        fail(128, f"failed to set up the container's mounts: {exc.strerror or exc}{where}")

    workdir = spec.get("workdir") or "/"
    try:
        os.makedirs(workdir, exist_ok=True)  # runc makes a missing cwd as root, mode 0755
    except OSError as exc:
        fail(128, f"mkdir cwd ({workdir!r}) set in config.json failed: {exc.strerror}")
    if identity.get("readOnlyRoot"):
        try:
            mount(None, "/", MS_BIND | MS_REMOUNT | MS_RDONLY)
        except OSError as exc:
            fail(128, f"failed to make the root filesystem read-only: {exc.strerror or exc}")
    parent = spec["agentPid"]
    if spec.get("pidNamespace"):
        try:
            parent = enter_pid_namespace(identity)
        except OSError as exc:
            fail(128, f"failed to make the container's PID namespace: {exc.strerror or exc}")
    try:
        become(identity, parent)
    except OSError as exc:
        fail(128, f"failed to switch to user {identity['uid']}:{identity['gid']}: {exc.strerror or exc}")
    try:
        os.chdir(workdir)
    except OSError as exc:
        fail(128, f"chdir to cwd ({workdir!r}) set in config.json failed: {exc.strerror}")

    argv = spec["argv"]
    if not argv:
        fail(128, spec.get("noCommandMessage") or "no command specified")
    path = find_executable(argv[0], os.environ.get("PATH", ""), workdir)
    try:
        os.execve(path, argv, os.environ)
    except OSError as exc:
        code = 127 if exc.errno == errno.ENOENT else 126
        fail(code, f'exec: "{argv[0]}": {exc.strerror}')


if __name__ == "__main__":
    main()
