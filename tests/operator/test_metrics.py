"""/metrics: the contract's gauges (read from the ledger) and the alerting series."""

from __future__ import annotations

import asyncio

import pytest
import redis
from operator_kit import throwaway_redis
from prometheus_client import generate_latest

from supercheck.config import Settings
from supercheck.ledger import QUEUED_KEY, RUNNING_KEY, Ledger
from supercheck.metrics import Metrics


def test_alerting_series_exist_with_configured_label_keys():
    m = Metrics(Settings(SUPERCHECK_METRICS_LABEL_KEYS="team"))
    m.runs.labels("k6", "Passed", "qa").inc()
    m.retries.labels("k6", "oom", "qa").inc()
    m.rejections.labels("k6", "CapacityExceeded", "qa").inc()
    m.queue_wait.labels("k6", "qa").observe(1.5)
    m.run_duration.labels("k6", "Passed", "qa").observe(3)
    m.slots_repaired.labels("stale_running").inc()
    text = generate_latest(m.registry).decode()
    for needle in ('supercheck_testruns_total{label_team="qa",phase="Passed",type="k6"} 1.0',
                   'supercheck_retries_total{failure_class="oom",label_team="qa",type="k6"} 1.0',
                   'supercheck_rejections_total{label_team="qa",reason="CapacityExceeded",type="k6"} 1.0',
                   "supercheck_queue_wait_seconds_bucket", "supercheck_run_duration_seconds_bucket",
                   'supercheck_slots_repaired_total{kind="stale_running"} 1.0'):
        assert needle in text


def test_job_series_with_configured_label_keys():
    m = Metrics(Settings(SUPERCHECK_METRICS_LABEL_KEYS="team,app.kubernetes.io/part-of"))
    m.jobs.labels("playwright", "Failed", "qa", "shop").inc()
    m.job_duration.labels("playwright", "Failed", "qa", "shop").observe(95)
    m.job_tests.labels("playwright", "passed", "qa", "shop").inc(470)
    m.job_tests.labels("playwright", "notRun", "qa", "shop").inc(3)
    m.notifications.labels("delivered", "qa", "shop").inc()
    m.notifications.labels("failed", "qa", "shop").inc()
    text = generate_latest(m.registry).decode()
    extra = 'label_app_kubernetes_io_part_of="shop",label_team="qa"'
    for needle in (f'supercheck_jobs_total{{{extra},phase="Failed",type="playwright"}} 1.0',
                   f'supercheck_job_duration_seconds_bucket{{{extra},le="120.0",phase="Failed",type="playwright"}} 1.0',
                   f'supercheck_job_duration_seconds_bucket{{{extra},le="60.0",phase="Failed",type="playwright"}} 0.0',
                   f'supercheck_job_duration_seconds_sum{{{extra},phase="Failed",type="playwright"}} 95.0',
                   f'supercheck_job_tests_total{{{extra},outcome="passed",type="playwright"}} 470.0',
                   f'supercheck_job_tests_total{{{extra},outcome="notRun",type="playwright"}} 3.0',
                   f'supercheck_notifications_total{{{extra},result="delivered"}} 1.0',
                   f'supercheck_notifications_total{{{extra},result="failed"}} 1.0'):
        assert needle in text, needle
    plain = Metrics(Settings())  # no label keys configured: the listed labels only
    plain.notifications.labels("delivered").inc()
    plain.jobs.labels("k6", "Passed").inc()
    text = generate_latest(plain.registry).decode()
    assert 'supercheck_notifications_total{result="delivered"} 1.0' in text
    assert 'supercheck_jobs_total{phase="Passed",type="k6"} 1.0' in text


@pytest.mark.integration
def test_capacity_gauges_are_read_from_redis_at_scrape_time(tmp_path):
    with throwaway_redis(str(tmp_path)) as url:
        client = redis.Redis.from_url(url)
        client.set(RUNNING_KEY, 2)
        client.set(QUEUED_KEY, 5)
        m = Metrics(Settings(RUNNING_CAPACITY="3"))
        m.attach_ledger(url)
        text = generate_latest(m.registry).decode()
        assert "supercheck_capacity_running 2.0" in text and "supercheck_capacity_queued 5.0" in text
        assert "supercheck_capacity_running_limit 3.0" in text and "supercheck_ledger_up 1.0" in text
    text = generate_latest(m.registry).decode()
    assert "supercheck_ledger_up 0.0" in text and "supercheck_capacity_running 2.0" in text


@pytest.mark.integration
def test_namespace_gauges_list_only_namespaces_holding_something(tmp_path):
    """Fair share's per-namespace gauges, from the ledger's hashes: bounded by what the ledger holds."""
    async def admit_and_release(url: str) -> None:
        ledger = Ledger(url, 3, 5)
        await ledger.rebuild([], [], [], 0)
        await ledger.admit("a1", "team-a/r1", 0, weight=2)
        await ledger.admit("b1", "team-b/r1", 0)
        await ledger.admit("a2", "team-a/r2", 0)
        await ledger.release("b1")  # team-b holds nothing now; a2 takes the slot
        await ledger.admit("a3", "team-a/r3", 0)
        await ledger.close()

    with throwaway_redis(str(tmp_path)) as url:
        asyncio.run(admit_and_release(url))
        m = Metrics(Settings())
        m.attach_ledger(url)
        text = generate_latest(m.registry).decode()
    assert 'supercheck_namespace_running{namespace="team-a"} 3.0' in text
    assert 'supercheck_namespace_queued{namespace="team-a"} 1.0' in text
    assert 'namespace="team-b"' not in text


def test_every_metric_the_dashboard_and_the_alerts_name_is_exported():
    """A panel or an alert on a metric the operator never exports would stay empty, silently."""
    import re
    from pathlib import Path

    chart = Path(__file__).resolve().parents[2] / "charts" / "supercheck"
    text = "".join((chart / f).read_text() for f in ("dashboards/supercheck.json", "templates/prometheusrule.yaml"))
    named = {re.sub(r"_(bucket|count|sum)$", "", n) for n in re.findall(r"\bsupercheck_[a-z0-9_]+", text)}
    metrics = Metrics(Settings())
    metrics.attach_ledger("redis://127.0.0.1:1/0")  # the capacity gauges: read at scrape (here: Redis down)
    exported = {name for metric in metrics.registry.collect() for name in (metric.name, f"{metric.name}_total")}
    assert len(named) > 10 and named <= exported, sorted(named - exported)
