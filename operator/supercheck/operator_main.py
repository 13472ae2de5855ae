"""`supercheck-operator`: the Kopf operator's entry point.

Configuration comes from environment variables (:mod:`supercheck.config`, docs/operator.md).
More than one replica may run: Kopf peering (the cluster-wide ``ClusterKopfPeering`` named by
``SUPERCHECK_PEERING``, default ``supercheck``, the chart's release name; in namespaced mode a
``KopfPeering`` of that name in each watched namespace) keeps exactly one active — the oldest, by
priority — and the others paused until it stops answering; the ledger's atomic, per-run
idempotent scripts and the resourceVersion-checked status patches keep the invariants even
if two were active at once.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import socket
import sys
import time
from typing import Any, cast

import kopf
import kubernetes
from pydantic import ValidationError

from supercheck import (
    handlers,  # noqa: F401 - registers the handlers with Kopf
    kube,
    monitor_handlers,  # noqa: F401 - the Monitor handlers; after `handlers`, whose start-up they build on
    redact,
    schedule_handlers,  # registers the RunSchedule handlers with Kopf (and names their quiet wake-ups)
    stream_handlers,  # the live run streams (hub and API server); after `handlers`, which sets the settings
)
from supercheck.config import Settings

log = logging.getLogger("supercheck.operator")


class _QuietWakeups(logging.Filter):
    """Kopf logs every successful event handler; ours only wake a daemon, so say nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (msg.startswith(("Handler 'runner_pod_changed'", "Handler 'testrun_changed'", "Daemon 'drive'",
                                    *schedule_handlers.QUIET_HANDLERS, *MONITOR_WAKEUPS,
                                    *stream_handlers.QUIET_HANDLERS))
                    and msg.endswith("succeeded."))


# The Monitor handlers that only wake a daemon, and the daemon's own exit (supercheck.monitor_handlers).
MONITOR_WAKEUPS = ("Handler 'monitor_run_changed'", "Handler 'monitor_changed'", "Daemon 'monitor'")


def ensure_peering(settings: Settings) -> bool:
    """Create the peering objects Kopf needs; False when the peering CRD is not installed.

    Cluster-wide, one ClusterKopfPeering; watching a list of namespaces (SUPERCHECK_NAMESPACES), Kopf
    peers through a KopfPeering in each of them (the chart's Roles allow exactly that), so one is made
    in each. Kopf only patches peering objects: without one, two replicas would both be active."""
    api = kubernetes.client.CustomObjectsApi()
    targets: list[tuple[str | None, str, str]]
    if settings.namespaces:
        targets = [(ns, "KopfPeering", "kopfpeerings") for ns in settings.namespaces]
    else:
        targets = [(None, "ClusterKopfPeering", "clusterkopfpeerings")]
    for namespace, kind, plural in targets:
        body = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": settings.peering}}
        try:
            if namespace is None:
                api.create_cluster_custom_object("kopf.dev", "v1", plural, body)
            else:
                api.create_namespaced_custom_object("kopf.dev", "v1", namespace, plural, body)
        except kubernetes.client.ApiException as exc:
            if exc.status == 409:
                continue
            if exc.status == 404 and namespace is not None and "namespaces" in (exc.body or ""):
                # A listed namespace not made yet: Kopf starts serving it when it appears.
                log.warning("namespace %s does not exist yet: its peering object is not made", namespace)
                continue
            if exc.status == 404:
                log.warning("the %s CRD is not installed (crds/kopf-peering.yaml); running standalone", kind)
                return False
            raise
    return True


def identity(settings: Settings) -> str:
    """Stable per replica slot, so a restarted operator takes over its own peering record at once."""
    pod = os.environ.get("POD_ID") or os.environ.get("POD_NAME")
    if pod:
        return pod
    return f"supercheck@{socket.gethostname()}:{settings.health_port}"


def priority(settings: Settings) -> int:
    """Older replicas win: a replica started later pauses while an earlier one is alive."""
    if settings.peering_priority is not None:
        return settings.peering_priority
    return 10**13 - int(time.time() * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="supercheck-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kubernetes", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietWakeups())
    redact.install()  # no password in a log line, nor in an Event Kopf posts from one
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"supercheck-operator: invalid configuration:\n{redact.redact(str(exc))}", file=sys.stderr)
        return 2
    kube.load_config()

    standalone = settings.peering == "standalone"
    if not standalone:
        standalone = not ensure_peering(settings)

    loop = asyncio.new_event_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="kube"))
    asyncio.set_event_loop(loop)
    kwargs: dict[str, Any] = {}
    if settings.namespaces:
        kwargs["namespaces"] = settings.namespaces
    else:
        kwargs["clusterwide"] = True
    if standalone:
        kwargs["standalone"] = True
    else:
        kwargs["peering_name"] = settings.peering
        kwargs["priority"] = priority(settings)
    log.info("starting: identity %s, %s", identity(settings),
             "standalone" if standalone else f"peering {settings.peering!r} priority {kwargs['priority']}")
    kopf.run(
        loop=loop,
        # kopf types it as its private NewType of str
        identity=cast(Any, identity(settings)),
        memo=kopf.Memo(settings=settings),  # the handlers build their Engine from it at start-up
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
        **kwargs,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
