"""Kopf wiring. Thin: every decision is in the pure core, every action in :mod:`supercheck.engine`.

* ``runner_pods`` — a Kopf index of runner pods by owning TestRun uid. Kopf fills every index
  before any handler runs, so a restarted operator sees the pods that exist before deciding
  whether to create one (no double launch). Handlers pass it to the engine explicitly.
* pod and TestRun events only *wake* the run's daemon (events, not polling).
* ``drive`` — one daemon per TestRun, stepping :func:`supercheck.engine.testrun.step` under a per-run lock.
* ``cancel`` — the finalizer: deleting a TestRun stops its pod, releases its slot and records it Cancelled.
* start-up/clean-up: the :class:`~supercheck.engine.context.Engine` in Kopf's memo (``memo.engine``),
  ``/metrics``, the ledger's promotion channel, its periodic repair and the finished-pods sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

import kopf

from supercheck import memtrim, tracing
from supercheck.config import Settings
from supercheck.engine import jobrun
from supercheck.engine.context import Engine
from supercheck.engine.ledger_repair import clean_finished_pods, rebuild_ledger, reconcile_ledger
from supercheck.engine.run import RunHandle
from supercheck.engine.testrun import StillStopping, cancel, step
from supercheck.kube import Kube
from supercheck.ledger import Ledger
from supercheck.metrics import Metrics
from supercheck.models import VERSION
from supercheck.pods import PodView, pod_view
from supercheck.ports import ApiUnavailable, Conflict, LedgerUnavailable, NeedsRebuild, StoreUnavailable
from supercheck.redact import redact, remember, remember_connections
from supercheck.store import Store
from supercheck.vocabulary import GROUP, PROMOTIONS_CHANNEL, RUNNER_SELECTOR

FINALIZER = f"{GROUP}/finalizer"  # Kopf's on every run: deleting one cancels it first

log = logging.getLogger(__name__)


class KopfEvents:
    """Kubernetes Events through Kopf's poster (batched, in the background)."""

    def post(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            # A plain dict (our newest write) serves as well as kopf.Body: Kopf reads its metadata only.
            kopf.event(cast(kopf.Body, body), type=type_, reason=reason, message=message)
        except LookupError:  # outside Kopf's context: no Events
            pass


Logger = logging.Logger | logging.LoggerAdapter[Any]


def engine_of(memo: Any) -> Engine:
    eng = memo.get("engine")
    if not isinstance(eng, Engine):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return eng


def pods_of(index: kopf.Index[str, PodView] | None, uid: str) -> Callable[[], list[PodView]]:
    """The run's runner pods from Kopf's index (always given by Kopf; the default only types it)."""
    if index is None:
        raise kopf.PermanentError("the runner_pods index is missing")
    return lambda: list(index.get(uid, []))


# ---------------------------------------------------------------- start-up and clean-up


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """Kopf's "last handled configuration" of a run: none, read or written.

    Kopf keeps a copy of an object's spec, labels and annotations (by default in an annotation) to
    compute the diffs of change handlers (on.create, on.update, on.field). We have none: the engine
    reads the spec itself at every step, and a deletion is seen by its timestamp, not by a diff. So
    the copy would only cost, three times over:

    * space that is not there: all the annotations of an object share 256 KiB, while a spec may
      hold a script of 1,000,000 characters (and a JobRun many); a copy over the limit makes every
      patch of Kopf's fail with ``422 metadata.annotations: Too long``, the finalizer's removal too,
      so the run could never be deleted;
    * a PATCH of every new run to write it (and the conflict it causes with the run's first status
      write, read again and retried);
    * a deep copy of the whole object at every event of every run, to build the essence.

    Every run reads as handled and unchanged (Kopf's NOOP cause): the deletion handler still runs
    (Kopf detects a deletion by its timestamp and holds the run with its finalizer).
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: kopf.Body) -> Any:
        return {}

    def store(self, *, body: kopf.Body, patch: Any, essence: Any) -> None:
        return None


def diffbase_storage() -> kopf.DiffBaseStorage:
    return NoDiffBase(prefix=GROUP, key="last-handled-configuration")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, logger: Logger, **_: Any) -> None:
    cfg = memo.get("settings")
    if not isinstance(cfg, Settings):
        cfg = memo.settings = Settings()
    # The operator's own secrets are redacted by value from every text it passes on.
    remember_connections([cfg.redis_url, cfg.database_url])
    remember(cfg.aws_secret_access_key)
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = diffbase_storage()
    settings.posting.level = logging.WARNING  # Kopf's own chatter stays in the log; our Events are explicit
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.peering.lifetime = cfg.peering_lifetime_seconds
    settings.peering.stealth = True
    metrics = Metrics(cfg)
    metrics.attach_ledger(cfg.redis_url)
    metrics.follow_peering(settings.peering.standalone)
    metrics.serve(cfg.metrics_port)
    eng = Engine(
        settings=cfg,
        kube=Kube(cfg.namespaces),
        ledger=Ledger(cfg.redis_url, cfg.running_capacity, cfg.queued_capacity, fair_share=cfg.fair_share),
        store=Store(cfg.database_url),
        metrics=metrics,
        events=KopfEvents(),
        tracer=tracing.from_env(os.environ),  # one trace per run when OTEL_EXPORTER_OTLP_ENDPOINT is set
    )
    memo.engine = eng
    await eng.store.ready()
    memo.tasks = [
        asyncio.create_task(_promotions(eng), name="ledger promotions"),
        _every(cfg.ledger_reconcile_seconds, "ledger reconcile", lambda: reconcile_ledger(eng), first=True),
        _every(cfg.cleanup_interval_ms / 1000, "finished pods clean-up",
               lambda: clean_finished_pods(eng, time.time())),
    ]
    trim = memtrim.trimmer() if cfg.malloc_trim_seconds > 0 else None
    if trim is not None:
        async def give_back() -> None:
            await asyncio.to_thread(trim)

        memo.tasks.append(_every(cfg.malloc_trim_seconds, "memory trim", give_back))
    logger.info("supercheck operator: running capacity %d, queued capacity %d",
                cfg.running_capacity, cfg.queued_capacity)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    tasks: list[asyncio.Task[None]] = memo.get("tasks") or []
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    tasks.clear()
    eng = memo.get("engine")
    if isinstance(eng, Engine):
        await eng.ledger.close()
        await eng.store.close()
        await asyncio.to_thread(eng.tracer.flush, 5.0)  # the last spans, within a bounded time


def _every(seconds: float, name: str, sweep: Callable[[], Coroutine[Any, Any, None]], *,
           first: bool = False) -> asyncio.Task[None]:
    """A background sweep: at start (if ``first``) and then every ``seconds``; a failed sweep is logged
    and tried again next time."""

    async def loop() -> None:
        if not first:
            await asyncio.sleep(seconds)
        while True:
            try:
                await sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed", name)
            await asyncio.sleep(seconds)

    return asyncio.create_task(loop(), name=name)


async def _promotions(eng: Engine) -> None:
    """Wake runs promoted by any replica's release, through Redis pub/sub (no API round trip)."""
    import redis.asyncio as aioredis

    # Its own connection, without a read timeout: a quiet channel is not a broken one.
    client = aioredis.from_url(eng.settings.redis_url, socket_connect_timeout=2, health_check_interval=15)
    try:
        while True:
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(PROMOTIONS_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            eng.wake(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away: subscribe again when it is back
                log.debug("promotion channel: %s", exc)
                await asyncio.sleep(eng.settings.service_retry_seconds)
    finally:
        await client.aclose()


# ---------------------------------------------------------------- watching


@kopf.index("", "v1", "pods", labels=RUNNER_SELECTOR)
def runner_pods(body: kopf.Body, **_: Any) -> dict[str, PodView] | None:
    view = pod_view(body)
    return {view.owner_uid: view} if view.owner_uid else None


@kopf.on.event("", "v1", "pods", labels=RUNNER_SELECTOR)
def runner_pod_changed(body: kopf.Body, memo: Any, **_: Any) -> None:
    eng = memo.get("engine")
    if isinstance(eng, Engine):
        eng.wake(pod_view(body).owner_uid)


@kopf.on.event(GROUP, VERSION, "testruns")
def testrun_changed(uid: str, memo: Any, **_: Any) -> None:
    eng = memo.get("engine")
    if isinstance(eng, Engine):
        eng.wake(uid)


@kopf.on.event(GROUP, VERSION, "jobruns")
def jobrun_changed(uid: str, memo: Any, **_: Any) -> None:
    eng = memo.get("engine")
    if isinstance(eng, Engine):
        eng.wake(uid)


# ---------------------------------------------------------------- the run


@kopf.daemon(GROUP, VERSION, "testruns", cancellation_timeout=30.0, backoff=2.0)
async def drive(body: kopf.Body, uid: str, stopped: kopf.DaemonStopped, logger: Logger, memo: Any,
                runner_pods: kopf.Index[str, PodView] | None = None, **_: Any) -> None:
    await _drive(step, body, uid, stopped, logger, memo, runner_pods)


@kopf.daemon(GROUP, VERSION, "jobruns", cancellation_timeout=30.0, backoff=2.0)
async def drive_job(body: kopf.Body, uid: str, stopped: kopf.DaemonStopped, logger: Logger, memo: Any,
                    runner_pods: kopf.Index[str, PodView] | None = None, **_: Any) -> None:
    await _drive(jobrun.step, body, uid, stopped, logger, memo, runner_pods)


async def _drive(stepper: Callable[[RunHandle], Coroutine[Any, Any, float | None]], body: kopf.Body, uid: str,
                 stopped: kopf.DaemonStopped, logger: Logger, memo: Any,
                 runner_pods: kopf.Index[str, PodView] | None) -> None:
    """One daemon per run: step it under its lock, then wait for an event or the step's delay."""
    eng = engine_of(memo)
    run = RunHandle(eng, body, pods_of(runner_pods, uid), logger, finalizer=FINALIZER)
    wake = eng.wake_event(uid)
    while not stopped:
        wake.clear()
        async with eng.lock(uid):
            if stopped or uid in eng.cancelling:
                return
            try:
                delay = await stepper(run)
            except StoreUnavailable as exc:
                logger.warning("%s", exc)
                delay = eng.settings.service_retry_seconds
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
async def cancelled(body: kopf.Body, uid: str, logger: Logger, memo: Any,
                    runner_pods: kopf.Index[str, PodView] | None = None, **_: Any) -> None:
    await _cancel(cancel, body, uid, logger, memo, runner_pods)


@kopf.on.delete(GROUP, VERSION, "jobruns")
async def job_cancelled(body: kopf.Body, uid: str, logger: Logger, memo: Any,
                        runner_pods: kopf.Index[str, PodView] | None = None, **_: Any) -> None:
    await _cancel(jobrun.cancel, body, uid, logger, memo, runner_pods)


async def _cancel(canceller: Callable[[RunHandle], Coroutine[Any, Any, None]], body: kopf.Body, uid: str,
                  logger: Logger, memo: Any, runner_pods: kopf.Index[str, PodView] | None) -> None:
    eng = engine_of(memo)
    retry = eng.settings.service_retry_seconds
    async with eng.lock(uid):
        try:
            await canceller(RunHandle(eng, body, pods_of(runner_pods, uid), logger))
        except StillStopping as exc:
            raise kopf.TemporaryError(str(exc), delay=1) from exc
        except StoreUnavailable as exc:
            # Kopf keeps a handler's error in an annotation of the run, which its readers see.
            raise kopf.TemporaryError(redact(f"{exc}; the Cancelled row is written when it returns"),
                                      delay=retry) from exc
        except (LedgerUnavailable, ApiUnavailable) as exc:
            raise kopf.TemporaryError(redact(str(exc)), delay=retry) from exc
        except NeedsRebuild as exc:
            await rebuild_ledger(eng)
            raise kopf.TemporaryError("the ledger was rebuilt; retrying", delay=0.1) from exc
        except Conflict as exc:
            raise kopf.TemporaryError("the run changed; retrying", delay=0.1) from exc
    eng.forget(uid)
