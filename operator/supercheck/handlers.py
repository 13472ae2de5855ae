"""Kopf wiring. Thin: every decision is in lifecycle/podspec/repair, every action in driver/runtime.

* ``runner_pods`` — a Kopf index of runner pods by owning TestRun uid. Kopf fills every index
  before any handler runs, so a restarted operator sees the pods that exist before deciding
  whether to create one (no double launch).
* pod and TestRun events only *wake* the run's daemon (events, not polling).
* ``drive`` — one daemon per TestRun, stepping :class:`RunDriver` under a per-run lock.
* ``cancel`` — the finalizer: deleting a TestRun stops its pod, releases its slot and
  records it as Cancelled.
* start-up/clean-up: clients, ``/metrics``, the ledger's promotion channel and its periodic
  repair against the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import kopf

from supercheck import lifecycle as lc
from supercheck import podspec, repair
from supercheck.config import Settings
from supercheck.driver import RunDriver
from supercheck.kube import ApiUnavailable, Conflict, Kube
from supercheck.ledger import Ledger, LedgerUnavailable, NeedsRebuild
from supercheck.metrics import Metrics
from supercheck.models import GROUP, VERSION, Phase, TestRunStatus
from supercheck.runtime import PROMOTIONS_CHANNEL, Runtime
from supercheck.store import StoreUnavailable

log = logging.getLogger(__name__)
RUNNER_SELECTOR = {podspec.MANAGED_BY: podspec.MANAGER}

RT: Runtime | None = None
SETTINGS: Settings | None = None  # set by operator_main before Kopf starts
_TASKS: list[asyncio.Task] = []


def runtime() -> Runtime:
    if RT is None:
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return RT


# ---------------------------------------------------------------- start-up and clean-up


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, logger: logging.Logger, **_: Any) -> None:
    global RT
    cfg = SETTINGS or Settings()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.WARNING  # Kopf's own chatter stays in the log; our Events are explicit
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.peering.lifetime = cfg.peering_lifetime_seconds
    settings.peering.stealth = True
    metrics = Metrics(cfg)
    metrics.attach_ledger(cfg.redis_url)
    metrics.serve(cfg.metrics_port)
    rt = Runtime(
        settings=cfg,
        kube=Kube(),
        ledger=Ledger(cfg.redis_url, cfg.running_capacity, cfg.queued_capacity),
        store=_store(cfg),
        metrics=metrics,
    )
    RT = rt
    await rt.store.ready()
    _TASKS.append(asyncio.create_task(_promotions(rt), name="ledger promotions"))
    _TASKS.append(asyncio.create_task(_reconcile_forever(rt), name="ledger reconcile"))
    _TASKS.append(asyncio.create_task(_cleanup_forever(rt), name="finished pods clean-up"))
    logger.info("supercheck operator: running capacity %d, queued capacity %d",
                cfg.running_capacity, cfg.queued_capacity)


def _store(cfg: Settings):
    from supercheck.store import Store

    return Store(cfg.database_url)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for task in _TASKS:
        task.cancel()
    for task in _TASKS:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    _TASKS.clear()
    if RT is not None:
        await RT.ledger.close()
        await RT.store.close()


async def _promotions(rt: Runtime) -> None:
    """Wake runs promoted by any replica's release, through Redis pub/sub (no API round trip)."""
    import redis.asyncio as aioredis

    # Its own connection, without a read timeout: a quiet channel is not a broken one.
    client = aioredis.from_url(rt.settings.redis_url, socket_connect_timeout=2, health_check_interval=15)
    try:
        while True:
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(PROMOTIONS_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            rt.wake(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: subscribe again when it is back
                log.debug("promotion channel: %s", exc)
                await asyncio.sleep(rt.settings.service_retry_seconds)
    finally:
        await client.aclose()


async def _reconcile_forever(rt: Runtime) -> None:
    """Leak repair at start and then periodically (the ledger against the cluster's truth)."""
    while True:
        try:
            await rt.reconcile_ledger()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a failed sweep is retried on the next one
            log.exception("ledger reconcile failed")
        await asyncio.sleep(rt.settings.ledger_reconcile_seconds)


async def _cleanup_forever(rt: Runtime) -> None:
    """Every CLEANUP_INTERVAL_MS: remove runner pods of runs that ended more than one interval ago."""
    interval = rt.settings.cleanup_interval_ms / 1000
    while True:
        await asyncio.sleep(interval)
        try:
            testruns = await rt.kube.list_testruns()
            pods = await rt.kube.list_pods(f"{podspec.MANAGED_BY}={podspec.MANAGER}")
            for namespace, name in repair.finished_pods_to_clean(testruns, pods, time.time(), interval):
                await rt.kube.delete_pod(namespace, name)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next sweep tries again
            log.exception("clean-up sweep failed")


# ---------------------------------------------------------------- watching


@kopf.index("", "v1", "pods", labels=RUNNER_SELECTOR)
def runner_pods(body: kopf.Body, **_: Any) -> dict[str, lc.PodView] | None:
    view = lc.pod_view(body)
    return {view.owner_uid: view} if view.owner_uid else None


@kopf.on.event("", "v1", "pods", labels=RUNNER_SELECTOR)
def runner_pod_changed(body: kopf.Body, **_: Any) -> None:
    if RT is not None:
        RT.wake(lc.pod_view(body).owner_uid)


@kopf.on.event(GROUP, VERSION, "testruns")
def testrun_changed(uid: str, **_: Any) -> None:
    if RT is not None:
        RT.wake(uid)


def _bind_index(rt: Runtime, index: kopf.Index) -> None:
    rt.pods_by_owner = lambda uid: list(index.get(uid, []))


# ---------------------------------------------------------------- the run


@kopf.daemon(GROUP, VERSION, "testruns", cancellation_timeout=30.0, backoff=2.0)
async def drive(body: kopf.Body, uid: str, stopped: kopf.DaemonStopped, logger: logging.Logger,
                runner_pods: kopf.Index, **_: Any) -> None:
    rt = runtime()
    _bind_index(rt, runner_pods)
    driver = RunDriver(rt, body, logger)
    wake = rt.wake_event(uid)
    while not stopped:
        wake.clear()
        async with rt.lock(uid):
            if stopped or uid in rt.cancelling:
                return
            try:
                delay = await driver.step()
            except StoreUnavailable as exc:
                logger.warning("%s", exc)
                delay = rt.settings.service_retry_seconds
        if delay is None:
            return
        if delay > 0:
            await _wait(wake, stopped, delay)


async def _wait(wake: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    tasks = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(tasks, timeout=None if delay == float("inf") else delay,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


# ---------------------------------------------------------------- cancellation (the finalizer)


@kopf.on.delete(GROUP, VERSION, "testruns")
async def cancel(body: kopf.Body, uid: str, name: str, namespace: str, logger: logging.Logger,
                 runner_pods: kopf.Index, **_: Any) -> None:
    rt = runtime()
    _bind_index(rt, runner_pods)
    async with rt.lock(uid):
        rt.cancelling.add(uid)
        driver = RunDriver(rt, body, logger)
        fresh = await driver.refresh() or dict(body)
        status = TestRunStatus.model_validate(fresh.get("status") or {})
        try:
            if status.phase is None or not status.phase.terminal:
                live = [v for v in rt.pods_by_owner(uid) if v.live]
                for v in live:
                    if not v.deleting:
                        await rt.kube.delete_pod(namespace, v.name, grace_seconds=5)
                if live:
                    raise kopf.TemporaryError(f"waiting for runner pod(s) {', '.join(v.name for v in live)} "
                                              "to stop", delay=1)
                async with rt.gate.shared():
                    fresh = await driver.patch(fresh, lc.cancelled_patch(status, lc.now_utc()))
                    status = TestRunStatus.model_validate(fresh["status"])
                    await driver.release(status)
                spec_type = (fresh.get("spec") or {}).get("type", "")
                rt.metrics.runs.labels(spec_type, Phase.CANCELLED.value, *driver._extra(fresh)).inc()
                driver.event(fresh, "Normal", "Cancelled", status.message or "cancelled")
            else:
                await driver.release(status)  # idempotent: a crash may have left it held
            rows = lc.rows_to_record(fresh, status)
            if rows:
                await rt.store.upsert(rows)
        except StoreUnavailable as exc:
            raise kopf.TemporaryError(f"{exc}; the Cancelled row is written when it returns",
                                      delay=rt.settings.service_retry_seconds)
        except (LedgerUnavailable, ApiUnavailable) as exc:
            raise kopf.TemporaryError(str(exc), delay=rt.settings.service_retry_seconds)
        except NeedsRebuild:
            await rt.rebuild_ledger()
            raise kopf.TemporaryError("the ledger was rebuilt; retrying", delay=0.1)
        except Conflict:
            raise kopf.TemporaryError("the TestRun changed; retrying", delay=0.1)
    rt.forget(uid)
