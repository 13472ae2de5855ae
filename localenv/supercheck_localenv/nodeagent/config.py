"""The node agent's command line, parsed and validated into one immutable config."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from .quantity import parse_quantity

DEFAULT_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PLAYWRIGHT_BROWSERS_PATH")
# The escape hatches, as variables too, so `make dev-up` picks them up from the shell.
CGROUPS_ENV = "SUPERCHECK_NODE_AGENT_CGROUPS"  # auto | off
RUN_AS_ENV = "SUPERCHECK_NODE_AGENT_RUN_AS"  # pod | root
PID_NAMESPACE_ENV = "SUPERCHECK_NODE_AGENT_PID_NAMESPACE"  # non-root | off


@dataclass(frozen=True)
class AgentConfig:
    kubeconfig: str
    node_name: str
    port: int
    tls_cert: str
    tls_key: str
    state_dir: Path
    capacity: dict[str, str]
    address: str = "127.0.0.1"
    client_ca: str | None = None
    inherit_env: tuple[str, ...] = DEFAULT_INHERITED_ENV
    max_grace_seconds: int = 60
    heartbeat_seconds: float = 10.0
    cgroups: str = "auto"  # "auto": kernel limits where cgroup v1 cpu+memory are writable; "off": sampling
    run_as: str = "pod"  # "pod": the securityContext's user; "root": every container as root (the old way)
    cgroup_parent: str = ""  # folder under the agent's own cgroups; "" = supercheck-node-agent/<node>
    hidden_paths: tuple[str, ...] = ()  # host folders non-root containers see as empty (secrets of the host)
    pid_namespace: str = "non-root"  # "non-root": each non-root container in a PID namespace of its own; "off"

    @property
    def cgroup_folder(self) -> str:
        return self.cgroup_parent or f"supercheck-node-agent/{self.node_name}"


def _quantity(flag: str):
    def check(value: str) -> str:
        try:
            if parse_quantity(value) <= 0:
                raise ValueError("must be positive")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{flag}: {exc}") from None
        return value
    return check


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m supercheck_localenv.nodeagent",
        description="Local stand-in for kubelet + container runtime: registers a Node and runs "
                    "the containers of pods bound to it as local processes.")
    p.add_argument("--kubeconfig", required=True, help="kubeconfig with the agent's (admin) credentials")
    p.add_argument("--node-name", required=True)
    p.add_argument("--port", type=int, default=10250, help="HTTPS port for `kubectl logs` (kubelet endpoint)")
    p.add_argument("--address", default="127.0.0.1", help="address the HTTPS server binds")
    p.add_argument("--tls-cert", required=True, help="serving certificate (for 127.0.0.1)")
    p.add_argument("--tls-key", required=True)
    p.add_argument("--client-ca", help="if set, require API server client certificates signed by this CA")
    p.add_argument("--state-dir", required=True, type=Path, help="volumes, logs and bookkeeping")
    p.add_argument("--cpu", default="4", type=_quantity("--cpu"))
    p.add_argument("--memory", default="8Gi", type=_quantity("--memory"))
    p.add_argument("--ephemeral-storage", default="50Gi", type=_quantity("--ephemeral-storage"))
    p.add_argument("--pods", default="110", type=_quantity("--pods"))
    p.add_argument("--inherit-env", default=",".join(DEFAULT_INHERITED_ENV),
                   help="comma-separated variables containers inherit from the agent (the image ENV stand-in)")
    p.add_argument("--max-grace-seconds", type=int, default=60,
                   help="cap on a deleted pod's grace period before SIGKILL")
    p.add_argument("--heartbeat-seconds", type=float, default=10.0)
    p.add_argument("--cgroups", choices=("auto", "off"), default=os.environ.get(CGROUPS_ENV) or "auto",
                   help="auto: each container in its own cgroup v1 cpu+memory groups (kernel CPU quota and "
                        "OOM killer) when /sys/fs/cgroup/{cpu,memory} are writable, else memory limits by "
                        f"sampling; off: always sampling (env {CGROUPS_ENV})")
    p.add_argument("--run-as", choices=("pod", "root"), default=os.environ.get(RUN_AS_ENV) or "pod",
                   help="pod: containers run as their securityContext runAsUser/runAsGroup (root when unset); "
                        f"root: every container as root, securityContext users ignored (env {RUN_AS_ENV})")
    p.add_argument("--pid-namespace", choices=("non-root", "off"),
                   default=os.environ.get(PID_NAMESPACE_ENV) or "non-root",
                   help="non-root: each container that runs as a non-root user gets its own PID namespace (it "
                        "sees only its own processes in /proc, as a pod does); off: every container shares the "
                        f"host's (env {PID_NAMESPACE_ENV})")
    p.add_argument("--hide", action="append", default=[], metavar="PATH",
                   help="a host folder that containers running as non-root users see empty (a read-only tmpfs "
                        "over it), e.g. the local environment's .dev with its keys and passwords; repeatable")
    p.add_argument("--cgroup-parent", default="",
                   help="folder for the containers' groups under the agent's own cgroup in each hierarchy "
                        "(default supercheck-node-agent/<node name>); removed and re-made at start")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_args(argv: list[str] | None = None) -> tuple[AgentConfig, bool]:
    parser = build_parser()
    a = parser.parse_args(argv)
    for flag, value, choices in (("--cgroups", a.cgroups, ("auto", "off")), ("--run-as", a.run_as, ("pod", "root")),
                                 ("--pid-namespace", a.pid_namespace, ("non-root", "off"))):
        if value not in choices:  # argparse checks given flags, not defaults taken from the environment
            parser.error(f"{flag}: {value!r} is not one of {', '.join(choices)}")
    cfg = AgentConfig(
        kubeconfig=a.kubeconfig, node_name=a.node_name, port=a.port, address=a.address,
        tls_cert=a.tls_cert, tls_key=a.tls_key, client_ca=a.client_ca,
        state_dir=a.state_dir.resolve(),
        capacity={"cpu": a.cpu, "memory": a.memory, "ephemeral-storage": a.ephemeral_storage,
                  "pods": a.pods},
        inherit_env=tuple(n.strip() for n in a.inherit_env.split(",") if n.strip()),
        max_grace_seconds=a.max_grace_seconds, heartbeat_seconds=a.heartbeat_seconds,
        cgroups=a.cgroups, run_as=a.run_as, cgroup_parent=a.cgroup_parent.strip("/"),
        hidden_paths=tuple(str(Path(h).resolve()) for h in a.hide), pid_namespace=a.pid_namespace)
    return cfg, a.verbose
