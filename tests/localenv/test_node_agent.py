"""The node agent (kubelet stand-in): its pure core, its runtime, and pods on the real cluster.

Three layers:
* pure functions (env, volumes, mounts, pod status, log format, node objects) - no I/O;
* the container runtime on this machine (mount namespaces, memory limit, start errors) -
  real processes, no cluster;
* pods on the real local control plane (`make dev-up`), scheduled to the default node
  `supercheck-node` that `make dev-up` runs this agent for.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from supercheck_localenv.layout import NODE_NAME
from supercheck_localenv.nodeagent import logformat
from supercheck_localenv.nodeagent.config import parse_args
from supercheck_localenv.nodeagent.envvars import (
    EnvError,
    ObjectSnapshot,
    container_argv,
    container_env,
    expand,
    format_map_file,
    inherited_env,
    referenced_objects,
    service_env,
)
from supercheck_localenv.nodeagent.mounts import HostVolume, MountError, container_mounts
from supercheck_localenv.nodeagent.node import go_arch, node_conditions, node_labels, node_status, without_stale_taints
from supercheck_localenv.nodeagent.podstatus import (
    Attempt,
    ContainerTrack,
    PodView,
    build_pod_status,
    mark_never_started,
    pod_phase,
    should_restart,
    terminated_reason,
    tracks_from_status,
)
from supercheck_localenv.nodeagent.podworker import Backoff, termination_message
from supercheck_localenv.nodeagent.quantity import parse_quantity, quantity_to_bytes, scaled_ceiling
from supercheck_localenv.nodeagent.volumes import (
    EmptyDir,
    FileSet,
    HostPath,
    TokenSource,
    VolumeError,
    render_volume,
    token_sources,
)

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def a_pod(**spec) -> dict:
    return {
        "metadata": {"name": "p1", "namespace": "ns1", "uid": "u-1",
                     "labels": {"app": "demo", "b": 'say "hi"'}, "annotations": {"note": "x"}},
        "spec": {"nodeName": "n1", "serviceAccountName": "runner",
                 "containers": [{"name": "c", "image": "img"}], **spec},
    }


# ============================================================== quantities


@pytest.mark.parametrize("text,expected", [
    ("100Mi", 100 * 1024 ** 2), ("1.5Gi", 1.5 * 1024 ** 3), ("128974848", 128974848),
    ("129e6", 129_000_000), ("123M", 123_000_000), ("500m", 0.5), ("1k", 1000),
])
def test_parse_quantity(text, expected):
    assert float(parse_quantity(text)) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["", "abc", "10Qi", "ki"])
def test_parse_quantity_rejects_garbage_with_the_text(bad):
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(bad)


def test_bytes_round_up_and_scaled_ceiling():
    assert quantity_to_bytes("1.5Ki") == 1536
    assert quantity_to_bytes("0.5") == 1
    assert scaled_ceiling("500m") == 1  # limits.cpu in cores is rounded up, as kubelet does
    assert scaled_ceiling("2", "1m") == 2000
    assert scaled_ceiling("100Mi", "1Mi") == 100


def test_config_flags_parse_and_validate(tmp_path):
    cfg, verbose = parse_args(["--kubeconfig", "k", "--node-name", "n", "--port", "20250", "--tls-cert", "c",
                               "--tls-key", "k", "--state-dir", str(tmp_path), "--cpu", "16",
                               "--memory", "32Gi", "--ephemeral-storage", "100Gi", "--pods", "110"])
    assert cfg.capacity == {"cpu": "16", "memory": "32Gi", "ephemeral-storage": "100Gi", "pods": "110"}
    assert cfg.port == 20250 and not verbose
    with pytest.raises(SystemExit):
        parse_args(["--kubeconfig", "k", "--node-name", "n", "--tls-cert", "c", "--tls-key", "k",
                    "--state-dir", str(tmp_path), "--memory", "lots"])


# ============================================================== environment


@pytest.mark.parametrize("text,expected", [
    ("$(A)", "1"), ("x$(A)y$(B)", "x1y2"), ("$$(A)", "$(A)"), ("$(MISSING)", "$(MISSING)"),
    ("$(A", "$(A"), ("a$b", "a$b"), ("trailing$", "trailing$"), ("$$$(A)", "$1"), ("", ""),
])
def test_expand_follows_kubelet(text, expected):
    assert expand(text, {"A": "1"}, {"B": "2"}) == expected


def test_container_env_resolves_every_source_in_kubelet_order():
    pod = a_pod()
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}, {"secretRef": {"name": "sec"}}],
        "env": [
            {"name": "PLAIN", "value": "v-$(CM_color)"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "color"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "token", "value": "overridden"},
            {"name": "SVC", "value": "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
        ],
    }
    objects = ObjectSnapshot(configmaps={"cm": {"data": {"color": "blue"}}},
                             secrets={"sec": {"data": {"password": b64("s3cr3t"), "token": b64("t")}}})
    env = container_env(pod, container, objects, service_env("127.0.0.1", 16443), {"memory": "2Gi"})
    assert env["CM_color"] == "blue"
    assert env["PLAIN"] == "v-blue"
    assert env["PW"] == "s3cr3t"
    assert env["COLOR"] == "blue"
    assert (env["NAME"], env["NS"], env["IP"], env["NODE"], env["APP"]) == ("p1", "ns1", "127.0.0.1", "n1", "demo")
    assert env["MEM"] == "2048"  # no limit set: the node's allocatable, as kubelet does
    assert "OPT" not in env
    assert env["token"] == "overridden"  # env wins over envFrom
    assert env["SVC"] == "127.0.0.1:16443"
    assert env["KUBERNETES_PORT_16443_TCP_ADDR"] == "127.0.0.1"


@pytest.mark.parametrize("var,message", [
    ({"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}, 'secret "nope" not found'),
    ({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz"}}},
     "couldn't find key zz in ConfigMap ns1/cm"),
    ({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}, "unsupported fieldRef"),
])
def test_missing_required_reference_is_a_config_error_with_kubelets_words(var, message):
    objects = ObjectSnapshot(configmaps={"cm": {"data": {"a": "1"}}})
    with pytest.raises(EnvError, match=message):
        container_env(a_pod(), {"name": "c", "env": [var]}, objects)


def test_envfrom_missing_object_respects_optional():
    c = {"name": "c", "envFrom": [{"configMapRef": {"name": "gone", "optional": True}}]}
    assert container_env(a_pod(), c, ObjectSnapshot()) == {}
    c["envFrom"][0]["configMapRef"]["optional"] = False
    with pytest.raises(EnvError, match='configmap "gone" not found'):
        container_env(a_pod(), c, ObjectSnapshot())


def test_argv_expands_from_the_container_env_and_args_alone_are_the_command():
    env = {"WHO": "world"}
    argv = container_argv({"command": ["echo"], "args": ["hi $(WHO)", "$$(WHO)"]}, env)
    assert argv == ["echo", "hi world", "$(WHO)"]
    assert container_argv({"args": ["sh", "-c", "true"]}, env) == ["sh", "-c", "true"]
    assert container_argv({}, env) == []


def test_referenced_objects_cover_env_envfrom_and_volumes():
    pod = a_pod(
        initContainers=[{"name": "i", "envFrom": [{"secretRef": {"name": "s-init"}}]}],
        containers=[{"name": "c", "env": [{"name": "A",
                                           "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}}]}],
        volumes=[{"name": "v1", "configMap": {"name": "cm-vol"}}, {"name": "v2", "secret": {"secretName": "s-vol"}},
                 {"name": "v3", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}},
                                                          {"serviceAccountToken": {"path": "token"}}]}}])
    assert referenced_objects(pod) == ({"cm-env", "cm-vol", "kube-root-ca.crt"}, {"s-init", "s-vol"})


def test_labels_file_format_is_sorted_and_quoted():
    assert format_map_file({"b": 'say "hi"', "a": "1"}) == 'a="1"\nb="say \\"hi\\""'


def test_inherited_env_puts_the_agents_interpreter_dir_on_path():
    env = inherited_env({"PATH": "/usr/bin:/bin", "HOME": "/root", "SECRET": "no"}, ["PATH", "HOME"], "/venv/bin")
    assert env == {"PATH": "/venv/bin:/usr/bin:/bin", "HOME": "/root"}
    assert inherited_env({"PATH": "/venv/bin:/bin"}, ["PATH"], "/venv/bin")["PATH"] == "/venv/bin:/bin"


# ============================================================== volumes and mounts


def test_configmap_volume_items_and_modes():
    objects = ObjectSnapshot(configmaps={"cm": {"data": {"a.js": "A", "b": "B"},
                                                "binaryData": {"bin": b64("\x00\x01")}}})
    vol = {"name": "v", "configMap": {"name": "cm", "defaultMode": 0o755,
                                      "items": [{"key": "a.js", "path": "sub/x.js"},
                                                {"key": "b", "path": "b", "mode": 0o600}]}}
    plan = render_volume(vol, a_pod(), objects, {}, {})
    assert isinstance(plan, FileSet) and plan.read_only
    assert plan.files == {"sub/x.js": (b"A", 0o755), "b": (b"B", 0o600)}
    everything = render_volume({"name": "v", "configMap": {"name": "cm"}}, a_pod(), objects, {}, {})
    assert everything.files["bin"] == (b"\x00\x01", 0o644)


def test_missing_objects_fail_the_mount_unless_optional():
    with pytest.raises(VolumeError, match='configmap "cm" not found'):
        render_volume({"name": "v", "configMap": {"name": "cm"}}, a_pod(), ObjectSnapshot(), {}, {})
    assert render_volume({"name": "v", "secret": {"secretName": "s", "optional": True}},
                         a_pod(), ObjectSnapshot(), {}, {}).files == {}
    with pytest.raises(VolumeError, match="has no key"):
        render_volume({"name": "v", "secret": {"secretName": "s", "items": [{"key": "k", "path": "k"}]}},
                      a_pod(), ObjectSnapshot(secrets={"s": {"data": {}}}), {}, {})


def test_projected_service_account_volume_as_the_admission_plugin_adds_it():
    vol = {"name": "kube-api-access-x", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}
    pod = a_pod(volumes=[vol])
    assert token_sources(pod) == [TokenSource("", 3607)]
    objects = ObjectSnapshot(configmaps={"kube-root-ca.crt": {"data": {"ca.crt": "PEM"}}})
    plan = render_volume(vol, pod, objects, {TokenSource("", 3607): "jwt"}, {})
    assert plan.files == {"token": (b"jwt", 420), "ca.crt": (b"PEM", 420), "namespace": (b"ns1", 420)}
    with pytest.raises(VolumeError, match="no service account token"):
        render_volume(vol, pod, objects, {}, {})


def test_downward_api_volume_labels_annotations_and_resources():
    vol = {"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
    ]}}
    pod = a_pod(containers=[{"name": "c", "resources": {"limits": {"cpu": "250m"}}}])
    files = render_volume(vol, pod, ObjectSnapshot(), {}, {}).files
    assert files["labels"][0] == b'app="demo"\nb="say \\"hi\\""'
    assert files["annotations"][0] == b'note="x"'
    assert files["name"][0] == b"p1"
    assert files["cpu"][0] == b"250"


def test_other_volume_kinds():
    assert isinstance(render_volume({"name": "e", "emptyDir": {}}, a_pod(), ObjectSnapshot(), {}, {}), EmptyDir)
    assert render_volume({"name": "h", "hostPath": {"path": "/tmp", "type": "Directory"}},
                         a_pod(), ObjectSnapshot(), {}, {}) == HostPath("/tmp", "Directory")
    with pytest.raises(VolumeError, match="not supported by the node agent"):
        render_volume({"name": "p", "persistentVolumeClaim": {"claimName": "x"}}, a_pod(), ObjectSnapshot(), {}, {})


def test_container_mounts_order_subpaths_read_only_and_termination_file():
    volumes = {"data": HostVolume("/state/v/data"), "cfg": HostVolume("/state/v/cfg", read_only=True)}
    container = {"name": "c", "terminationMessagePath": "/tmp/msg", "volumeMounts": [
        {"name": "data", "mountPath": "/data/inner", "subPath": "sub/dir"},
        {"name": "data", "mountPath": "/data"},
        {"name": "cfg", "mountPath": "/scripts"},
        {"name": "data", "mountPath": "/logs/", "subPathExpr": "$(POD)", "readOnly": True},
    ]}
    mounts = container_mounts(container, volumes, "/state/term", {"POD": "p1"})
    assert [(m.source, m.target, m.read_only) for m in mounts] == [
        ("/state/v/data", "/data", False),
        ("/state/v/cfg", "/scripts", True),  # configMap-like volumes are always read-only
        ("/state/v/data/p1", "/logs", True),
        ("/state/v/data/sub/dir", "/data/inner", False),  # nested after its parent
        ("/state/term", "/tmp/msg", False),
    ]
    assert container_mounts({"name": "c"}, {}, "/t")[-1].target == "/dev/termination-log"
    with pytest.raises(MountError):
        container_mounts({"name": "c", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}, volumes, "/t")
    with pytest.raises(MountError):
        container_mounts({"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": "../up"}]},
                         volumes, "/t")


# ============================================================== pod status


def ran(name: str, code: int | None, *, running=False, restarts=0, reason=None) -> ContainerTrack:
    t = ContainerTrack(name=name, image="img", restart_count=restarts)
    a = Attempt(f"local://{abs(hash(name)) % 1000}", T0, "local://img", pid=1)
    if running:
        t.start(a)
    else:
        a.finished_at, a.exit_code = T0 + timedelta(seconds=1), code
        a.reason = reason or terminated_reason(code)
        t.finish(a)
    return t


def waiting(name: str) -> ContainerTrack:
    return ContainerTrack(name=name, image="img")


@pytest.mark.parametrize("policy,init,main,kw,expected", [
    ("Never", [], [waiting("a")], {}, "Pending"),
    ("Never", [], [ran("a", None, running=True), waiting("b")], {}, "Pending"),
    ("Never", [], [ran("a", None, running=True)], {}, "Running"),
    ("Never", [], [ran("a", 0)], {}, "Succeeded"),
    ("Never", [], [ran("a", 0), ran("b", 3)], {}, "Failed"),
    ("Never", [], [ran("a", 3), ran("b", None, running=True)], {}, "Running"),
    ("OnFailure", [], [ran("a", 1)], {}, "Running"),
    ("OnFailure", [], [ran("a", 0)], {}, "Succeeded"),
    ("Always", [], [ran("a", 0)], {}, "Running"),
    ("Never", [ran("i", 1)], [waiting("a")], {}, "Failed"),
    ("OnFailure", [ran("i", 1)], [waiting("a")], {}, "Pending"),
    ("Never", [ran("i", 0)], [waiting("a")], {}, "Pending"),
    ("Always", [], [ran("a", 143)], {"killed": True}, "Failed"),
    ("Always", [], [ran("a", 0)], {"killed": True}, "Succeeded"),
    ("Never", [], [ran("a", 0)], {"failed": True, "killed": True}, "Failed"),
])
def test_pod_phase_matches_kubelet(policy, init, main, kw, expected):
    assert pod_phase(policy, init, main, **kw) == expected


def test_restart_policy():
    assert [should_restart(p, c) for p in ("Always", "OnFailure", "Never") for c in (0, 1)] == [
        True, True, False, True, False, False]
    assert terminated_reason(0) == "Completed" and terminated_reason(2) == "Error"
    assert terminated_reason(0, oom_killed=True) == "OOMKilled"


def test_status_of_a_failed_pod_reports_every_field_kubectl_and_controllers_read():
    pod = a_pod(restartPolicy="Never")
    pod["metadata"]["generation"] = 2
    pod["status"] = {"conditions": [{"type": "PodScheduled", "status": "True",
                                     "lastTransitionTime": "2030-01-01T00:00:00Z"}]}
    track = ran("c", 3)
    track.terminated.message = "boom"
    status = build_pod_status(pod, PodView(tracks=[track], start_time=T0, sandbox_ready=True),
                              previous_conditions=None, now=T0)
    assert status["phase"] == "Failed"
    assert status["podIP"] == status["hostIP"] == "127.0.0.1"
    assert status["startTime"] == "2030-01-02T03:04:05Z"
    cs = status["containerStatuses"][0]
    assert cs["state"]["terminated"]["exitCode"] == 3
    assert cs["state"]["terminated"]["reason"] == "Error"
    assert cs["state"]["terminated"]["message"] == "boom"
    assert cs["state"]["terminated"]["containerID"].startswith("local://")
    assert cs["ready"] is False and cs["restartCount"] == 0 and cs["image"] == "img"
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["PodScheduled"]["status"] == "True"  # someone else's condition, kept
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "PodCompleted"
    assert conds["Initialized"]["status"] == "True"
    assert "reason" not in status
    assert status["observedGeneration"] == 2


def test_running_pod_is_ready_and_transition_times_hold_while_status_holds():
    pod = a_pod(restartPolicy="Never")
    view = PodView(tracks=[ran("c", None, running=True)], start_time=T0, sandbox_ready=True)
    first = build_pod_status(pod, view, previous_conditions=None, now=T0)
    assert first["phase"] == "Running"
    assert {c["type"]: c["status"] for c in first["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True"}
    later = build_pod_status(pod, view, previous_conditions=first["conditions"], now=T0 + timedelta(minutes=5))
    assert later == first
    assert first["containerStatuses"][0]["state"] == {"running": {"startedAt": "2030-01-02T03:04:05Z"}}


def test_deadline_shows_only_once_processes_are_gone():
    pod = a_pod(restartPolicy="Never")
    view = PodView(tracks=[ran("c", None, running=True)], start_time=T0, sandbox_ready=True,
                   failure=("DeadlineExceeded", "Pod was active on the node longer than the specified deadline"))
    assert build_pod_status(pod, view, previous_conditions=None, now=T0)["phase"] == "Running"
    view.tracks = [ran("c", 143)]
    view.killed = True
    status = build_pod_status(pod, view, previous_conditions=None, now=T0)
    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")


def test_waiting_init_and_crashloop_statuses():
    pod = a_pod(restartPolicy="OnFailure", initContainers=[{"name": "i", "image": "img"}])
    init = ContainerTrack("i", "img", waiting=("PodInitializing", None))
    main = ContainerTrack("c", "img", waiting=("PodInitializing", None))
    status = build_pod_status(pod, PodView([init], [main], T0, True), previous_conditions=None, now=T0)
    assert status["phase"] == "Pending"
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Initialized"]["message"] == "containers with incomplete status: [i]"
    crashed = ran("c", 1)
    crashed.set_waiting("CrashLoopBackOff", "back-off 1s")
    cs = crashed.to_status()
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1


def test_recovery_marks_containers_that_were_running_as_lost():
    status = [{"name": "c", "restartCount": 2, "containerID": "local://99",
               "state": {"running": {"startedAt": "2030-01-01T00:00:00Z"}}},
              {"name": "d", "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                     "startedAt": "2030-01-01T00:00:00Z",
                                                     "finishedAt": "2030-01-01T00:00:01Z"}}}]
    tracks, lost = tracks_from_status([{"name": "c"}, {"name": "d"}, {"name": "e"}], status, T0)
    assert lost == ["c"]
    c, d, e = tracks
    assert c.terminated.exit_code == 137 and c.terminated.reason == "ContainerStatusUnknown"
    assert "node agent restarted" in c.terminated.message
    assert c.restart_count == 2 and c.terminated.container_id == "local://99"
    assert d.succeeded and not e.ever_ran
    assert pod_phase("Never", [], tracks) == "Pending"  # e never started: it still can
    mark_never_started([e], T0)
    assert e.terminated.reason == "ContainerStatusUnknown" and e.terminated.exit_code == 137
    assert pod_phase("Never", [], tracks) == "Failed"


def test_backoff_doubles_caps_and_resets():
    b = Backoff()
    assert [b.next(1) for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert b.next(3600) == 1


def test_termination_message_file_and_fallback_to_logs(tmp_path):
    msg, log = tmp_path / "msg", tmp_path / "0.log"
    log.write_bytes(b"".join(logformat.encode_record(i, "stdout", f"line {i}".encode()) for i in range(100)))
    msg.write_bytes(b"x" * 5000)
    assert termination_message(msg, "File", 1, log) == "x" * 4096
    msg.write_bytes(b"")
    assert termination_message(msg, "File", 1, log) == ""
    fallback = termination_message(msg, "FallbackToLogsOnError", 1, log)
    assert fallback.endswith("line 99\n") and "line 19\n" not in fallback and len(fallback) <= 2048
    assert termination_message(msg, "FallbackToLogsOnError", 0, log) == ""


# ============================================================== log files


def test_line_splitter_whole_partial_and_unterminated_lines():
    s = logformat.LineSplitter(max_record=8)
    assert s.feed(b"ab\ncd") == [(b"ab", False)]
    assert s.feed(b"ef\n0123456789abc\n") == [(b"cdef", False), (b"01234567", True), (b"89abc", False)]
    assert s.feed(b"tail") == []
    assert s.flush() == [(b"tail", False)]
    assert s.flush() == []


def test_records_round_trip_and_kubectl_queries():
    base = 1_900_000_000 * 10 ** 9
    data = (logformat.encode_record(base, "stdout", b"one")
            + logformat.encode_record(base + 10 ** 9, "stderr", b"two ")
            + logformat.encode_record(base + 2 * 10 ** 9, "stdout", b"thr", partial=True)
            + logformat.encode_record(base + 2 * 10 ** 9 + 1, "stdout", b"ee")
            + logformat.encode_record(base + 3 * 10 ** 9, "stdout", b"")
            + b"2030-01-01T00:00:00.000000000Z stdout F half-writ")  # not yet a whole record
    recs = logformat.parse_records(data)
    assert [r.content for r in recs] == [b"one", b"two ", b"thr", b"ee", b""]
    assert recs[1].stream == "stderr" and recs[0].time_ns == base
    out, _ = logformat.render(recs)
    assert out == b"one\ntwo \nthree\n\n"
    out, _ = logformat.render(logformat.select(recs, tail_lines=2))
    assert out == b"three\n\n"  # a partial record belongs to its line
    out, _ = logformat.render(logformat.select(recs, since_ns=base + 10 ** 9))
    assert out.startswith(b"two ")
    out, _ = logformat.render(recs[:1], timestamps=True)
    assert out == logformat.format_timestamp(base).encode() + b" one\n"
    assert logformat.select(recs, tail_lines=0) == []


def test_timestamps_parse_any_fraction():
    ns = logformat.parse_timestamp("2030-01-02T03:04:05.5Z")
    assert ns % 10 ** 9 == 500_000_000
    assert logformat.parse_timestamp(logformat.format_timestamp(ns)) == ns
    assert logformat.parse_timestamp("2030-01-02T03:04:05Z") == ns - 500_000_000


# ============================================================== node


def test_node_object_parts():
    assert node_labels("n1", "amd64") == {
        "kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
    assert go_arch("x86_64") == "amd64" and go_arch("aarch64") == "arm64"
    conds = node_conditions("2030-01-01T00:00:10Z", "2030-01-01T00:00:00Z")
    assert {c["type"]: c["status"] for c in conds} == {
        "Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"}
    cap = {"cpu": "16", "memory": "32Gi", "ephemeral-storage": "100Gi", "pods": "110"}
    status = node_status(cap, 20250, {"kubeletVersion": "v1"}, conds, "host")
    assert status["capacity"] == status["allocatable"] == cap
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 20250}}
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    taints = [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}, {"key": "mine", "effect": "NoSchedule"}]
    assert without_stale_taints(taints) == [{"key": "mine", "effect": "NoSchedule"}]


# ============================================================== the runtime, on this machine
#
# Real processes, no cluster. Each case runs in its own Python process: the runtime makes
# its process a child subreaper that reaps every child, which must not happen inside pytest
# (it would steal the exit status of the kubectl subprocesses other tests run).

RUNTIME_HARNESS = r"""
import asyncio, json, os, sys, uuid
from pathlib import Path
from supercheck_localenv.nodeagent import logformat
from supercheck_localenv.nodeagent.containers import ContainerRuntime, LaunchRequest
from supercheck_localenv.nodeagent.mounts import BindMount
from supercheck_localenv.nodeagent.proctree import become_subreaper

def short_request(tmp, name, script):
    d = tmp / name
    return LaunchRequest(name=name, argv=["sh", "-c", script], env={"PATH": os.environ["PATH"]},
                         workdir="/", mounts=[], log_path=d / "0.log", attempt_dir=d)

async def recycled_namespace(rt, tmp):
    # A ends (its namespace is freed unless the runtime still holds it), B starts and unshares
    # (the kernel gives it the lowest free namespace number: A's), then A is finished, whose
    # final sweep kills "everything in A's namespace". B must survive it.
    out = []
    for i in range(3):
        a = await rt.start(short_request(tmp, f"a{i}", "sleep 0.3"))
        assert await a.started() is None
        while a.mnt_ns is None and not a.exited:  # captured by started() or the sampler
            await asyncio.sleep(0.01)
        a_ns = a.mnt_ns
        while not a.exited:
            await asyncio.sleep(0.01)
        b = await rt.start(short_request(tmp, f"b{i}", "sleep 1; exit 3"))
        assert await b.started() is None
        b_ns = b.mnt_ns
        a_info = await a.wait()
        b_info = await b.wait()
        out.append({"a": a_info.exit_code, "b": b_info.exit_code, "a_ns": a_ns, "b_ns": b_ns})
    return out

async def burst(rt, tmp):
    # The incident: a burst of short pods, each container ending while others start.
    async def one(i):
        await asyncio.sleep(i * 0.01)
        proc = await rt.start(short_request(tmp, f"c{i}", f"sleep 0.{1 + i % 4}; exit 0"))
        return [await proc.started(), (await proc.wait()).exit_code]
    return await asyncio.gather(*(one(i) for i in range(40)))

async def shadowed(rt, tmp):
    # An emptyDir at /tmp hides everything the host keeps under /tmp: here the checkout the
    # agent runs from (its cwd, holding the command) and a later volume's source.
    checkout = Path(os.getcwd())
    empty = tmp / "empty"; empty.mkdir()
    vol = tmp / "vol"; vol.mkdir(); (vol / "hello.txt").write_text("hello past /tmp")
    req = LaunchRequest(name="shadowed", argv=[str(checkout / "hello.sh")], env={"PATH": os.environ["PATH"]},
                        workdir="/", mounts=[BindMount(str(empty), "/tmp"), BindMount(str(vol), "/sc-test-data", True)],
                        log_path=tmp / "shadowed" / "0.log", attempt_dir=tmp / "shadowed")
    proc = await rt.start(req)
    out = {"start_error": await proc.started(), "exit_code": (await proc.wait()).exit_code,
           "log": [r.content.decode() for r in logformat.read_records(req.log_path)]}
    for remove in (os.rmdir, os.unlink):  # the mount point left on the host
        try:
            remove("/sc-test-data")
        except OSError:
            pass
    return out

async def run(case, tmp):
    become_subreaper()
    rt = ContainerRuntime(tmp / "state")
    rt.start_background()
    cases = {"recycled-namespace": recycled_namespace, "burst": burst, "shadowed": shadowed}
    if case in cases:
        print(json.dumps(await cases[case](rt, tmp)))
        return
    vol = tmp / "vol"; vol.mkdir(); (vol / "hello.txt").write_text("hello from the volume")
    term = tmp / "term"; term.write_bytes(b"")
    where = f"/tmp/sc-nodeagent-test-{uuid.uuid4().hex[:8]}"
    argv, limit = {
        "mounts": (["sh", "-c", f"cat {where}/vol/hello.txt; echo; "
                    f"touch {where}/vol/new 2>/dev/null && echo writable || echo read-only; "
                    "echo -n the-message > /dev/termination-log; echo to-stderr >&2; exit 7"], None),
        "oom": ([sys.executable, "-c", "import time; x = b'1' * (200 << 20); time.sleep(30)"], 50 << 20),
        "missing": (["definitely-not-a-command-xyz"], None),
        "tree": (["sh", "-c", "setsid sleep 1000 & echo $!; wait"], None),
    }[case]
    req = LaunchRequest(name=case, argv=argv, env={"PATH": os.environ["PATH"]}, workdir="/",
                        mounts=[BindMount(str(vol), where + "/vol", True),
                                BindMount(str(term), "/dev/termination-log")],
                        log_path=tmp / "logs" / "0.log", attempt_dir=tmp / "attempt", memory_limit=limit)
    proc = await rt.start(req)
    out = {"start_error": await proc.started()}
    if case == "tree":
        for _ in range(100):
            recs = logformat.read_records(req.log_path)
            if recs:
                break
            await asyncio.sleep(0.05)
        out["grandchild"] = int(recs[0].content)
        info = await proc.stop(2)
        await asyncio.sleep(0.3)
        out["grandchild_alive"] = os.path.exists(f"/proc/{out['grandchild']}")
    else:
        info = await proc.wait()
    out.update(exit_code=info.exit_code, oom=info.oom_killed, term=term.read_text(),
               log=[[r.stream, r.content.decode()] for r in logformat.read_records(req.log_path)],
               vol_files=sorted(os.listdir(vol)), host_sees_mount=os.path.exists(where + "/vol/hello.txt"),
               container_id=proc.container_id)
    for d in (where + "/vol", where):  # the empty mount points left on the host
        try:
            os.rmdir(d)
        except OSError:
            pass
    print(json.dumps(out))

asyncio.run(run(sys.argv[1], Path(sys.argv[2])))
"""


def run_runtime_case(case: str, tmp_path: Path, cwd: Path | None = None) -> dict:
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("containers need root (mount namespaces)")
    res = subprocess.run([sys.executable, "-c", RUNTIME_HARNESS, case, str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_runtime_mounts_termination_message_and_logs(tmp_path):
    out = run_runtime_case("mounts", tmp_path)
    assert out["start_error"] is None
    assert out["exit_code"] == 7
    assert out["term"] == "the-message"
    assert ["stdout", "hello from the volume"] in out["log"]
    assert ["stdout", "read-only"] in out["log"]  # readOnly mount is remounted read-only
    assert ["stderr", "to-stderr"] in out["log"]
    assert out["vol_files"] == ["hello.txt"]
    assert out["host_sees_mount"] is False  # the bind mount lived in the container's namespace only
    assert out["container_id"].startswith("local://")


def test_runtime_volume_over_tmp_hides_neither_the_checkout_nor_later_sources(tmp_path):
    # CI may clone the project under /tmp, and runner pods mount an emptyDir at /tmp.
    assert str(tmp_path).startswith("/tmp/")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "hello.sh").write_text("#!/bin/sh\ncat /sc-test-data/hello.txt; echo; ls -A /tmp | wc -l\n")
    (checkout / "hello.sh").chmod(0o755)
    out = run_runtime_case("shadowed", tmp_path, cwd=checkout)
    assert out["start_error"] is None and out["exit_code"] == 0, out
    assert out["log"][0] == "hello past /tmp"


def test_runtime_kills_a_tree_over_its_memory_limit(tmp_path):
    out = run_runtime_case("oom", tmp_path)
    assert (out["exit_code"], out["oom"]) == (137, True), out


def test_runtime_reports_a_missing_command_as_a_start_error(tmp_path):
    out = run_runtime_case("missing", tmp_path)
    code, message = out["start_error"]
    assert code == 127 and out["exit_code"] == 127
    assert 'exec: "definitely-not-a-command-xyz": executable file not found in $PATH' == message


def test_runtime_stop_reaches_processes_that_left_the_process_group(tmp_path):
    out = run_runtime_case("tree", tmp_path)
    assert out["grandchild"] > 0
    assert out["grandchild_alive"] is False
    assert out["exit_code"] == 143  # sh ended by SIGTERM


def test_runtime_the_end_of_a_container_never_kills_the_one_that_got_its_namespace_number(tmp_path):
    # The kernel reuses a freed mount namespace's number at once; the runtime marks a container's
    # processes by that number, so it must hold the namespace until its last kill is sent.
    pairs = run_runtime_case("recycled-namespace", tmp_path)
    assert all(p["a_ns"] for p in pairs), pairs  # A's namespace was known: its sweep used it
    assert [(p["a"], p["b"]) for p in pairs] == [(0, 3)] * 3, pairs


def test_runtime_burst_of_short_containers_all_end_with_their_own_exit_code(tmp_path):
    results = run_runtime_case("burst", tmp_path)
    assert results == [[None, 0]] * 40, [r for r in results if r != [None, 0]]


# ============================================================== pods on the real cluster
#
# Pods go through the real scheduler to the default node `supercheck-node` (nodeSelector),
# which `make dev-up` runs this agent for.

def poll(fn, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last seen: {json.dumps(last, default=str)[:3000]}")


def pod_manifest(name: str, command: list[str], *, restart: str = "Never", container: dict | None = None,
                 labels: dict | None = None, **spec) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"test": "node-agent"}},
        "spec": {
            "restartPolicy": restart,
            "nodeSelector": {"kubernetes.io/hostname": NODE_NAME},
            "terminationGracePeriodSeconds": 10,
            "containers": [{"name": "main", "image": "busybox", "command": command, **(container or {})}],
            **spec,
        },
    }


def read_pod(core_v1, ns: str, name: str) -> dict | None:
    from kubernetes.client.rest import ApiException

    try:
        pod = core_v1.read_namespaced_pod(name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return core_v1.api_client.sanitize_for_serialization(pod)


def run_pod(core_v1, ns: str, manifest: dict, phases=("Succeeded", "Failed"), timeout: float = 60) -> dict:
    core_v1.create_namespaced_pod(ns, manifest)
    name = manifest["metadata"]["name"]
    return poll(lambda: (p := read_pod(core_v1, ns, name)) and p.get("status", {}).get("phase") in phases and p,
                timeout, f"pod {ns}/{name} to reach {phases}")


def terminated(pod: dict, index: int = 0) -> dict:
    return pod["status"]["containerStatuses"][index]["state"]["terminated"]


@pytest.mark.cluster
def test_failing_command_ends_failed_with_its_exit_code_and_logs(namespace, core_v1, kubectl):
    pod = run_pod(core_v1, namespace, pod_manifest("hello", ["sh", "-c", "echo hello; exit 3"]))
    assert pod["status"]["phase"] == "Failed"
    term = terminated(pod)
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["status"]["podIP"] == "127.0.0.1" and pod["status"].get("startTime")
    logs = kubectl("logs", "-n", namespace, "hello")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "hello\n"


@pytest.mark.cluster
def test_exit_zero_is_succeeded_and_completed(namespace, core_v1):
    pod = run_pod(core_v1, namespace, pod_manifest("done", ["sh", "-c", "echo ok"]))
    assert pod["status"]["phase"] == "Succeeded"
    term = terminated(pod)
    assert (term["exitCode"], term["reason"]) == (0, "Completed")
    assert term["containerID"].startswith("local://")
    conds = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conds["PodScheduled"]["status"] == "True"
    assert conds["Initialized"]["status"] == "True"
    assert (conds["Ready"]["status"], conds["Ready"].get("reason")) == ("False", "PodCompleted")


@pytest.mark.cluster
def test_memory_over_the_limit_is_oomkilled(namespace, core_v1):
    allocate = "import time; x = b'1' * (300 << 20); print('allocated', flush=True); time.sleep(60)"
    manifest = pod_manifest("hog", ["python3", "-c", allocate],
                            container={"resources": {"limits": {"memory": "100Mi"}}})
    pod = run_pod(core_v1, namespace, manifest)
    assert pod["status"]["phase"] == "Failed"
    term = terminated(pod)
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled")


@pytest.mark.cluster
def test_active_deadline_fails_the_pod_with_deadline_exceeded(namespace, core_v1):
    pod = run_pod(core_v1, namespace, pod_manifest("slow", ["sleep", "1000"], activeDeadlineSeconds=2))
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    assert "longer than the specified deadline" in pod["status"]["message"]
    assert "terminated" in pod["status"]["containerStatuses"][0]["state"]


@pytest.mark.cluster
def test_a_missing_command_is_a_start_error_not_a_crash(namespace, core_v1):
    pod = run_pod(core_v1, namespace, pod_manifest("nocmd", ["no-such-command-on-this-node"]))
    assert pod["status"]["phase"] == "Failed"
    term = terminated(pod)
    assert (term["exitCode"], term["reason"]) == (127, "StartError")
    assert "no-such-command-on-this-node" in term["message"] and "not found" in term["message"]


@pytest.mark.cluster
def test_deleting_a_running_pod_stops_its_process_and_removes_the_object(namespace, core_v1):
    pod = run_pod(core_v1, namespace, pod_manifest("sleeper", ["sleep", "1000"]), phases=("Running",))
    cid = pod["status"]["containerStatuses"][0]["containerID"]
    assert cid.startswith("local://")
    pid = int(cid[len("local://"):])
    assert Path(f"/proc/{pid}").exists()
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"1000"]
    core_v1.delete_namespaced_pod("sleeper", namespace)
    poll(lambda: read_pod(core_v1, namespace, "sleeper") is None, 60, "the pod object to go away")
    poll(lambda: not Path(f"/proc/{pid}").exists(), 10, f"process {pid} to end")


@pytest.mark.cluster
def test_pod_whose_owner_is_deleted_is_garbage_collected(namespace, core_v1):
    owner = core_v1.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {}})
    manifest = pod_manifest("owned", ["sleep", "1000"])
    manifest["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]
    pod = run_pod(core_v1, namespace, manifest, phases=("Running",))
    pid = int(pod["status"]["containerStatuses"][0]["containerID"][len("local://"):])
    core_v1.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    poll(lambda: read_pod(core_v1, namespace, "owned") is None, 90, "the garbage collector to remove the pod")
    poll(lambda: not Path(f"/proc/{pid}").exists(), 10, f"process {pid} to end")


@pytest.mark.cluster
def test_more_cpu_than_the_node_has_stays_pending_unschedulable(namespace, core_v1):
    manifest = pod_manifest("greedy", ["true"], container={"resources": {"requests": {"cpu": "10000"}}})
    core_v1.create_namespaced_pod(namespace, manifest)

    def unschedulable():
        p = read_pod(core_v1, namespace, "greedy")
        conds = {c["type"]: c for c in (p or {}).get("status", {}).get("conditions") or []}
        c = conds.get("PodScheduled")
        return c and c["status"] == "False" and c.get("reason") == "Unschedulable" and p

    pod = poll(unschedulable, 60, "PodScheduled=False/Unschedulable")
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")
    assert "Insufficient cpu" in next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")["message"]


@pytest.mark.cluster
def test_env_volumes_and_termination_message(namespace, core_v1, kubectl):
    run = uuid.uuid4().hex[:8]
    core_v1.create_namespaced_config_map(namespace, {"metadata": {"name": "scripts"},
                                                     "data": {"x.txt": "from-configmap"}})
    core_v1.create_namespaced_secret(namespace, {"metadata": {"name": "creds"},
                                                 "data": {"password": b64("s3cr3t")}})
    script = (
        'printf "%s|%s|%s|%s|%s|%s" "$(cat /scripts/x.txt)" "$PASSWORD" "$POD_NAME" "$POD_NS" '
        '"$(tr "\\n" "," < /etc/podinfo/labels)" "$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)" '
        '> /dev/termination-log; '
        'touch /scripts/new 2>/dev/null && echo scripts-writable || echo scripts-read-only'
    )
    manifest = pod_manifest(
        "envpod", ["sh", "-c", script], labels={"app": "envtest", "run": run},
        container={
            "env": [
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            ],
            "volumeMounts": [{"name": "scripts", "mountPath": "/scripts"},
                             {"name": "podinfo", "mountPath": "/etc/podinfo"}],
        },
        volumes=[{"name": "scripts", "configMap": {"name": "scripts"}},
                 {"name": "podinfo", "downwardAPI": {"items": [
                     {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}])
    pod = run_pod(core_v1, namespace, manifest)
    term = terminated(pod)
    assert (pod["status"]["phase"], term["exitCode"]) == ("Succeeded", 0), term
    assert term["message"] == f'from-configmap|s3cr3t|envpod|{namespace}|app="envtest",run="{run}"|{namespace}'
    assert kubectl("logs", "-n", namespace, "envpod").stdout == "scripts-read-only\n"


@pytest.mark.cluster
def test_on_failure_restarts_with_previous_logs(namespace, core_v1, kubectl):
    script = ("if [ -f /data/once ]; then echo second; exit 0; fi; "
              "touch /data/once; echo first; exit 1")
    manifest = pod_manifest("retry", ["sh", "-c", script], restart="OnFailure",
                            container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                            volumes=[{"name": "data", "emptyDir": {}}])
    pod = run_pod(core_v1, namespace, manifest)
    cs = pod["status"]["containerStatuses"][0]
    assert pod["status"]["phase"] == "Succeeded"
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert kubectl("logs", "-n", namespace, "retry").stdout == "second\n"
    assert kubectl("logs", "-n", namespace, "retry", "--previous").stdout == "first\n"


@pytest.mark.cluster
def test_init_containers_run_first_and_share_volumes(namespace, core_v1):
    manifest = pod_manifest(
        "withinit", ["sh", "-c", "cat /data/order > /dev/termination-log"],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        initContainers=[
            {"name": f"init{i}", "image": "busybox", "command": ["sh", "-c", f"echo -n {i} >> /data/order"],
             "volumeMounts": [{"name": "data", "mountPath": "/data"}]} for i in (1, 2)],
        volumes=[{"name": "data", "emptyDir": {}}])
    pod = run_pod(core_v1, namespace, manifest)
    assert pod["status"]["phase"] == "Succeeded"
    assert terminated(pod)["message"] == "12"
    assert [s["state"]["terminated"]["reason"] for s in pod["status"]["initContainerStatuses"]] == ["Completed"] * 2


@pytest.mark.cluster
def test_kubectl_logs_options_reach_the_agent(namespace, core_v1, kubectl):
    import re

    run_pod(core_v1, namespace, pod_manifest("lines", ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; done"]))

    def logs(*args):
        res = kubectl("logs", "-n", namespace, "lines", *args, timeout=30)
        return res.returncode, res.stdout, res.stderr

    assert logs() == (0, "".join(f"line {i}\n" for i in range(1, 6)), "")
    assert logs("-f")[1] == "".join(f"line {i}\n" for i in range(1, 6))  # ends: the container has exited
    assert logs("--tail=2")[1] == "line 4\nline 5\n"
    assert logs("--limit-bytes=9")[1] == "line 1\nli"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line 5\n", logs("--timestamps", "--tail=1")[1])
    code, _, err = logs("--previous")
    assert code != 0 and 'previous terminated container "main" in pod "lines" not found' in err
