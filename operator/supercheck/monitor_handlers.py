"""Kopf wiring of Monitors. Thin: the decisions are in :mod:`supercheck.monitoring`, the actions in
:mod:`supercheck.engine.monitors`.

* start-up: the :class:`~supercheck.engine.monitors.Monitors` in Kopf's memo (``memo.monitors``), beside
  the run engine (``memo.engine``, made by :mod:`supercheck.handlers` first): the check slots and session,
  and the ``monitor_results`` writer (its own PostgreSQL connection) as a background task.
* ``monitor`` — one daemon per Monitor: step it, then sleep until the next due time or a wake-up.
* wake-ups: a change of a synthetic check's TestRun (labelled ``supercheck.io/monitor``) wakes its
  monitor's daemon (the check's outcome), and so does a change of a Monitor's spec (its ``generation``
  ahead of the ``observedGeneration`` its status shows). Nothing is polled.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf

from supercheck.checks import Checker
from supercheck.engine.monitors import MonitorHandle, Monitors, step
from supercheck.handlers import Logger, _wait, engine_of
from supercheck.models import VERSION
from supercheck.monitorresults import MonitorResults
from supercheck.monitorruns import monitor_uid_of
from supercheck.ports import ApiUnavailable, Conflict
from supercheck.store import Store
from supercheck.vocabulary import GROUP, LABEL_MONITOR, MONITORS, TESTRUNS

FINAL_WRITE_SECONDS = 5.0


def monitors_of(memo: Any) -> Monitors:
    mons = memo.get("monitors")
    if not isinstance(mons, Monitors):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return mons


@kopf.on.startup()
async def monitors_startup(memo: Any, **_: Any) -> None:
    eng = engine_of(memo)  # made by supercheck.handlers' start-up, which Kopf runs first
    cfg = eng.settings
    results = MonitorResults(Store(cfg.database_url), retention_days=cfg.monitor_results_retention_days,
                             retry_seconds=cfg.service_retry_seconds)
    memo.monitors = Monitors(eng, Checker(cfg.monitor_concurrency, cfg.monitor_denied_cidrs), results)
    memo.monitor_tasks = [asyncio.create_task(results.run(), name="monitor_results writer")]


@kopf.on.cleanup()
async def monitors_cleanup(memo: Any, **_: Any) -> None:
    tasks: list[asyncio.Task[None]] = memo.get("monitor_tasks") or []
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    mons = memo.get("monitors")
    if isinstance(mons, Monitors):
        await mons.checker.close()
        if isinstance(mons.results, MonitorResults):
            await mons.results.close()


@kopf.on.event(GROUP, VERSION, TESTRUNS, labels={LABEL_MONITOR: kopf.PRESENT})
def monitor_run_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    mons = memo.get("monitors")
    if isinstance(mons, Monitors):
        mons.wake(monitor_uid_of(body))


@kopf.on.event(GROUP, VERSION, MONITORS)
def monitor_changed(body: kopf.Body, uid: str, memo: Any, **_: Any) -> None:
    mons = memo.get("monitors")
    generation = body.get("metadata", {}).get("generation")
    if isinstance(mons, Monitors) and generation != (body.get("status") or {}).get("observedGeneration"):
        mons.wake(uid)


@kopf.daemon(GROUP, VERSION, MONITORS, cancellation_timeout=10.0, backoff=2.0)
async def monitor(body: kopf.Body, uid: str, stopped: kopf.DaemonStopped, logger: Logger, memo: Any,
                  **_: Any) -> None:
    """One daemon per Monitor: check when due, sleep until the next due time or a wake-up."""
    mons = monitors_of(memo)
    mon = MonitorHandle(mons, body, logger)
    wake = mons.wake_event(uid)
    retry = mons.eng.settings.service_retry_seconds
    try:
        while not stopped:
            wake.clear()
            try:
                delay = await step(mon)
            except (ApiUnavailable, Conflict) as exc:  # the API server away: the same step again soon
                logger.warning("Monitor step postponed: %s", exc)
                delay = retry
            await _wait(wake, stopped, delay)
    finally:
        mon.hide_state()  # deleted, or another replica leads now: its series is not this process's to show
        mons.forget(uid)
        reason = stopped.reason
        if reason is not None and not reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            # A restart or a new leader: what the write policy held back (counters, uptime) is not lost.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(mon.flush(), FINAL_WRITE_SECONDS)
