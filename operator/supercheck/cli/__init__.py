"""``supercheck``: the command line of Supercheck, for people and CI, with the user's kubeconfig.

``run`` (create a TestRun or a JobRun from files, ``--wait`` to follow it: exit 0 passed, 1 failed,
2 error, timed out, rejected or cancelled), ``get``, ``logs``, ``report``. docs/cli.md has them all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from supercheck.cli import args as cli_args
from supercheck.cli import report as report_cmd
from supercheck.cli import run as run_cmd
from supercheck.cli import tables
from supercheck.cli.kubeapi import PLURALS, Cluster, KubeCluster, load
from supercheck.cli.view import EXIT_ERROR


def find_run(cluster: Cluster, namespace: str, name: str) -> tuple[str, dict[str, object]] | None:
    """The run called ``name``: a TestRun, else a JobRun."""
    for kind, plural in PLURALS.items():
        body = cluster.get(plural, namespace, name)
        if body is not None:
            return kind, body
    return None


def get(cluster: Cluster, namespace: str | None, name: str | None, out: TextIO, err: TextIO) -> int:
    if name is not None and namespace is not None:
        found = find_run(cluster, namespace, name)
        if found is None:
            err.write(f"supercheck get: no TestRun or JobRun named {name} in {namespace}\n")
            return EXIT_ERROR
        runs = [found]
    else:
        runs = [(kind, body) for kind, plural in PLURALS.items() for body in cluster.list(plural, namespace)]
        if not runs:
            err.write(f"No TestRuns or JobRuns in {'any namespace' if namespace is None else namespace}.\n")
            return 0
    out.write(tables.runs_table(runs, with_namespace=namespace is None) + "\n")
    return 0


def logs(cluster: Cluster, namespace: str, name: str, tail: int | None, out: TextIO, err: TextIO) -> int:
    from kubernetes.client.rest import ApiException

    found = find_run(cluster, namespace, name)
    if found is None:
        err.write(f"supercheck logs: no TestRun or JobRun named {name} in {namespace}\n")
        return EXIT_ERROR
    kind, body = found
    status = body.get("status") or {}
    assert isinstance(status, dict)
    pods: list[str] = []
    if kind == "TestRun":
        pods = [h["podName"] for h in status.get("attemptHistory") or [] if h.get("podName")]
        if not pods and status.get("podName"):
            pods = [status["podName"]]
    else:
        for shard in status.get("shards") or []:
            pods += [h["podName"] for h in shard.get("attemptHistory") or [] if h.get("podName")]
            if shard.get("podName") and shard["podName"] not in pods:
                pods.append(shard["podName"])
        merge = status.get("merge") or {}
        if merge.get("podName"):
            pods.append(merge["podName"])
    if not pods:
        err.write(f"supercheck logs: {kind} {name} has no runner pod yet (phase {status.get('phase') or 'Pending'})\n")
        return EXIT_ERROR
    code = 0
    for pod in pods:
        if len(pods) > 1:
            out.write(f"==> pod {pod} <==\n")
        try:
            out.write(cluster.pod_log(namespace, pod, tail))
        except ApiException as exc:
            err.write(f"supercheck logs: pod {pod}: {exc.reason} ({exc.status}); "
                      "a finished run's pods may be gone\n")
            code = EXIT_ERROR
        out.flush()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parsed = cli_args.parse(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    try:
        api, context_namespace = load(parsed.kubeconfig, parsed.context)
    except Exception as exc:  # noqa: BLE001 - no usable kubeconfig: say so, not a traceback
        err.write(f"supercheck: cannot load the kubeconfig: {exc}\n")
        return EXIT_ERROR
    cluster = KubeCluster(api)
    namespace = parsed.namespace or context_namespace
    if parsed.command == "run":
        return run_cmd.run(parsed, cluster, namespace, out, err)
    if parsed.command == "get":
        return get(cluster, None if parsed.all_namespaces else namespace, parsed.name, out, err)
    if parsed.command == "logs":
        return logs(cluster, namespace, parsed.name, parsed.tail, out, err)
    found = find_run(cluster, namespace, parsed.name)
    return report_cmd.report(found[1] if found else None, parsed.name, directory=parsed.dir, link=parsed.link,
                             link_seconds=parsed.link_seconds, open_it=parsed.open, out=out, err=err)
