"""Prometheus metrics on ``/metrics``: the contract's gauges and what a user alerts on.

The two capacity gauges are read from Redis when scraped (the ledger is shared by every
replica, so a per-process count would lie); when Redis is away they keep the last value read
and ``supercheck_ledger_up`` says 0. So are the per-namespace ones (fair share), with one series
per namespace that holds a slot or a queue place right now: the ledger keeps no entry for a
namespace at 0, so the label's values are bounded by RUNNING_CAPACITY + QUEUED_CAPACITY.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from supercheck.config import Settings
from supercheck.vocabulary import REDIS_NAMESPACE_QUEUED_KEY as NAMESPACE_QUEUED_KEY
from supercheck.vocabulary import REDIS_NAMESPACE_RUNNING_KEY as NAMESPACE_RUNNING_KEY
from supercheck.vocabulary import REDIS_QUEUED_KEY as QUEUED_KEY
from supercheck.vocabulary import REDIS_RUNNING_KEY as RUNNING_KEY

log = logging.getLogger(__name__)

DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)
SCHEDULE_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600)  # late: caught up after a while
# Monitors: a check takes milliseconds (HTTP, TCP) to minutes (a synthetic run); its lag should stay small
CHECK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
# Kopf's peering decides whether this replica handles resources and says so in its log only: these are
# the messages of kopf._core.engines.peering.process_peering_event (tests/operator/test_metrics.py runs it).
KOPF_PEERING_LOGGER = "kopf._core.engines.peering"
KOPF_PAUSED = ("Pausing operations", "Pausing all operators")
KOPF_RESUMED = ("Resuming operations",)


class LedgerGauges:
    """A collector: GET the contract's counters at scrape time."""

    def __init__(self, url: str, settings: Settings):
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.settings = settings
        self.last = {RUNNING_KEY: 0.0, QUEUED_KEY: 0.0}
        self.last_namespaces: tuple[dict[str, float], dict[str, float]] = ({}, {})
        self.lock = threading.Lock()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = 1.0
        with self.lock:
            try:
                running, queued = self.client.mget(RUNNING_KEY, QUEUED_KEY)
                self.last = {RUNNING_KEY: float(running or 0), QUEUED_KEY: float(queued or 0)}
                ns_running, ns_queued = ({_s(k): float(v) for k, v in self.client.hgetall(key).items()}
                                         for key in (NAMESPACE_RUNNING_KEY, NAMESPACE_QUEUED_KEY))
                self.last_namespaces = (ns_running, ns_queued)
            except (redis.RedisError, OSError):
                up = 0.0
            values = dict(self.last)
            ns_running, ns_queued = self.last_namespaces
        g = GaugeMetricFamily("supercheck_capacity_running", "Runs holding a running slot (Redis ledger)")
        g.add_metric([], values[RUNNING_KEY])
        yield g
        g = GaugeMetricFamily("supercheck_capacity_queued", "Runs waiting in the queue (Redis ledger)")
        g.add_metric([], values[QUEUED_KEY])
        yield g
        g = GaugeMetricFamily("supercheck_namespace_running",
                              "Running slots held by a namespace's runs (fair share; absent: 0)", labels=["namespace"])
        for ns, value in sorted(ns_running.items()):
            g.add_metric([ns], value)
        yield g
        g = GaugeMetricFamily("supercheck_namespace_queued",
                              "A namespace's runs waiting in the queue (fair share; absent: 0)", labels=["namespace"])
        for ns, value in sorted(ns_queued.items()):
            g.add_metric([ns], value)
        yield g
        g = GaugeMetricFamily("supercheck_capacity_running_limit", "RUNNING_CAPACITY")
        g.add_metric([], self.settings.running_capacity)
        yield g
        g = GaugeMetricFamily("supercheck_capacity_queued_limit", "QUEUED_CAPACITY")
        g.add_metric([], self.settings.queued_capacity)
        yield g
        g = GaugeMetricFamily("supercheck_ledger_up", "1 when the Redis ledger answered the last scrape")
        g.add_metric([], up)
        yield g


class Metrics:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None):
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        extra = list(settings.metrics_label_names)
        r = self.registry
        self.runs = Counter("supercheck_testruns_total", "TestRuns that reached a terminal phase",
                            ["type", "phase", *extra], registry=r)
        self.queue_wait = Histogram("supercheck_queue_wait_seconds", "From TestRun created to its slot granted",
                                    ["type", *extra], buckets=WAIT_BUCKETS, registry=r)
        self.run_duration = Histogram("supercheck_run_duration_seconds", "From start to terminal phase",
                                      ["type", "phase", *extra], buckets=DURATION_BUCKETS, registry=r)
        self.retries = Counter("supercheck_retries_total", "Attempts retried, by failure class",
                               ["type", "failure_class", *extra], registry=r)
        self.rejections = Counter("supercheck_rejections_total", "TestRuns rejected or refused before a pod",
                                  ["type", "reason", *extra], registry=r)
        self.slots_repaired = Counter("supercheck_slots_repaired_total",
                                      "Ledger entries repaired against the cluster's truth", ["kind"], registry=r)
        self.ledger_rebuilds = Counter("supercheck_ledger_rebuilds_total",
                                       "Ledger rebuilt from the cluster after Redis lost it", registry=r)
        self.dispatch_latency = Histogram("supercheck_dispatch_latency_seconds",
                                          "From slot granted to runner pod created", buckets=LATENCY_BUCKETS,
                                          registry=r)
        self.results_pending = Gauge("supercheck_results_pending",
                                     "TestRuns whose rows wait for PostgreSQL", registry=r)
        self.service_errors = Counter("supercheck_service_errors_total", "Calls to a backing service that failed",
                                      ["service"], registry=r)
        # JobRuns (suites run as one job): the same extra labels as the run metrics
        self.jobs = Counter("supercheck_jobs_total", "JobRuns that reached a terminal phase",
                            ["type", "phase", *extra], registry=r)
        self.job_duration = Histogram("supercheck_job_duration_seconds", "JobRun from start to terminal phase",
                                      ["type", "phase", *extra], buckets=DURATION_BUCKETS, registry=r)
        self.job_tests = Counter("supercheck_job_tests_total", "Tests of ended JobRuns, by outcome",
                                 ["type", "outcome", *extra], registry=r)
        self.notifications = Counter("supercheck_notifications_total", "Webhook notifications, by result",
                                     ["result", *extra], registry=r)
        # RunSchedules: how late a due time's run was created, what was created and what skipped. Labelled by
        # namespace at most (schedules are user objects: their names would make the series unbounded).
        self.schedule_lag = Histogram("supercheck_schedule_lag_seconds",
                                      "From a RunSchedule's due time to its run created", buckets=SCHEDULE_LAG_BUCKETS,
                                      registry=r)
        self.schedule_runs = Counter("supercheck_schedule_runs_created_total", "Runs created by RunSchedules",
                                     ["namespace"], registry=r)
        self.schedule_skipped = Counter("supercheck_schedule_skipped_total",
                                        "Due times a RunSchedule skipped (concurrencyPolicy Forbid, a run active)",
                                        ["namespace"], registry=r)
        # Monitors (supercheck.engine.monitors): per-monitor state, the checks' duration and lag
        self.monitor_up = Gauge("supercheck_monitor_up", "1: the Monitor is Up, 0: Down (absent: Unknown, "
                                "suspended or deleted)", ["namespace", "monitor"], registry=r)
        self.monitor_check_duration = Histogram("supercheck_monitor_check_duration_seconds",
                                                "One check: an HTTP request, a TCP connect, a synthetic TestRun",
                                                ["namespace", "type"], buckets=CHECK_BUCKETS, registry=r)
        self.monitor_check_lag = Histogram("supercheck_monitor_check_lag_seconds",
                                           "From a check's due time to its start (waiting for a check slot)",
                                           buckets=LAG_BUCKETS, registry=r)
        self.monitor_checks = Counter("supercheck_monitor_checks_total",
                                      "Monitor checks by result: ok, failed, none (no result: a synthetic run "
                                      "rejected or cancelled, a header's Secret missing), skipped (the previous "
                                      "synthetic check still running)", ["type", "result"], registry=r)
        # Kopf peering: one replica handles resources, the others pause (docs/operator.md, crash safety)
        self.active = Gauge("supercheck_operator_active",
                            "1 while this replica handles resources (peering chose it, or it runs standalone), "
                            "0 while it is paused", registry=r)
        self._pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._gauges: LedgerGauges | None = None

    def extra_labels(self, labels: dict[str, str] | None) -> dict[str, str]:
        labels = labels or {}
        return {name: labels.get(key, "") for key, name in
                zip(self.settings.metrics_label_keys, self.settings.metrics_label_names, strict=True)}

    def attach_ledger(self, url: str) -> None:
        self._gauges = LedgerGauges(url, self.settings)
        self.registry.register(self._gauges)

    def follow_peering(self, standalone: bool) -> None:
        """Keep ``supercheck_operator_active`` to Kopf's pause and resume decisions.

        A replica with peering starts paused (Kopf waits for the peering object before handling
        anything) and only a resumption is logged when it turns out to be the chosen one."""
        self.active.set(1 if standalone else 0)
        if not standalone:
            kopf_log = logging.getLogger(KOPF_PEERING_LOGGER)
            kopf_log.setLevel(min(kopf_log.getEffectiveLevel(), logging.INFO))  # the resumption is at INFO
            kopf_log.addHandler(_PeeringLog(self.active))

    def results_waiting(self, uid: str, waiting: bool) -> None:
        with self._pending_lock:
            (self._pending.add if waiting else self._pending.discard)(uid)
            self.results_pending.set(len(self._pending))

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
            log.info("metrics on :%d/metrics", port)


class _PeeringLog(logging.Handler):
    def __init__(self, active: Gauge):
        super().__init__()
        self.active_gauge = active

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(KOPF_PAUSED):
            self.active_gauge.set(0)
        elif message.startswith(KOPF_RESUMED):
            self.active_gauge.set(1)


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def monotonic() -> float:
    return time.monotonic()
