"""The Monitor engine (supercheck.engine.monitors) on the in-memory Kube port (fakes.py), a fake clock,
and real servers: the checked site and the webhook receiver are aiohttp servers on OS-chosen ports.

Time: the engine's clock is the fake one (the test moves it from one due time to the next); the checks
and the webhooks are real requests, made at once."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from engine_kit import World, world
from monitor_kit import Hooks, Site

from supercheck import monitoring as mt
from supercheck.checks import Checker
from supercheck.engine.monitors import MonitorHandle, Monitors, step
from supercheck.models import TestRunSpec
from supercheck.monitorresults import MonitorResultRow
from supercheck.vocabulary import ANNOTATION_SCHEDULED_TIME, LABEL_MONITOR


@dataclass
class Rows:
    rows: list[MonitorResultRow] = field(default_factory=list)

    def add(self, row: MonitorResultRow) -> None:
        self.rows.append(row)


@dataclass
class MonWorld:
    w: World
    mons: Monitors
    rows: Rows
    site: Site
    hooks: Hooks
    handles: dict[str, MonitorHandle] = field(default_factory=dict)

    def handle(self, name: str = "shop", fresh: bool = False) -> MonitorHandle:
        """The monitor as its daemon holds it; ``fresh``: a new daemon (a restarted operator)."""
        body = self.w.kube.monitor(name)
        if fresh or name not in self.handles:
            self.handles[name] = MonitorHandle(self.mons, body)
        self.handles[name].live = body  # the watch delivered the newest version
        return self.handles[name]

    async def step(self, name: str = "shop") -> float:
        return await step(self.handle(name))

    async def next_check(self, name: str = "shop") -> float:
        """Move the clock to the next due time and step."""
        mon = self.handle(name)
        assert mon.next_due is not None
        self.w.clock.advance(max(0.0, mon.next_due - self.w.clock.now().timestamp()))
        return await self.step(name)

    def status(self, name: str = "shop") -> dict[str, Any]:
        return self.w.kube.monitor(name).get("status") or {}

    def writes(self) -> int:
        return self.w.kube.calls.count("patch_status")

    def metric(self, name: str, **labels: str) -> float | None:
        return self.w.eng.metrics.registry.get_sample_value(name, labels)


def scenario(fn: Callable[[MonWorld], Awaitable[None]], **settings: Any) -> None:
    async def go() -> None:
        w = world(**settings)
        site, hooks = await Site().start(), await Hooks().start()
        rows = Rows()
        mons = Monitors(w.eng, Checker(10), rows)
        try:
            await fn(MonWorld(w, mons, rows, site, hooks))
        finally:
            await mons.checker.close()
            await site.stop()
            await hooks.stop()

    asyncio.run(go())


def http_monitor(m: MonWorld, name: str = "shop", **spec: Any) -> None:
    m.w.kube.add_monitor(name, {"interval": "10s", "http": {"url": m.site.url},
                                "notify": [{"url": m.hooks.url()}], **spec})


# ---------------------------------------------------------------- HTTP: Up, Down, Up


def test_up_down_after_the_threshold_and_up_again_with_one_message_each_way():
    async def go(m: MonWorld) -> None:
        http_monitor(m)
        delay = await m.step()  # a new monitor is checked at once
        st = m.status()
        assert st["state"] == "Up" and st["lastResult"].startswith("HTTP 200 in") and st["checks"] == 1
        assert 5 <= delay <= 15  # the next slot, at least half an interval later
        assert m.w.events.reasons() == ["MonitorUp"] and m.hooks.posts == []  # Unknown -> Up: no webhook
        assert m.metric("supercheck_monitor_up", namespace="ns", monitor="shop") == 1

        m.site.status = 503
        await m.next_check()
        await m.next_check()
        st = m.status()
        assert (st["state"], st["consecutiveFailures"]) == ("Up", 2)
        assert st["message"] == "expected a 2xx status, got 503 (2 of 3 failed checks before Down)"
        await m.next_check()
        st = m.status()
        assert (st["state"], st["notifiedState"]) == ("Down", "Down")
        assert st["since"] == st["incidentStartedAt"] == st["lastCheckAt"]
        assert m.w.events.posted[-1][:2] == ("Warning", "MonitorDown")
        assert "Down after 3 failed check(s): expected a 2xx status, got 503" in m.w.events.posted[-1][2]
        assert [p["state"] for p in m.hooks.posts] == ["Down"]
        down = m.hooks.posts[0]
        assert (down["kind"], down["name"], down["previousState"], down["consecutiveFailures"]) == \
            ("Monitor", "shop", "Up", 3)
        assert st["notifications"][0]["ok"] and "s3cret" not in str(st)
        assert m.metric("supercheck_monitor_up", namespace="ns", monitor="shop") == 0

        for _ in range(3):  # still down: no Event, no webhook
            await m.next_check()
        assert [p["state"] for p in m.hooks.posts] == ["Down"] and m.w.events.reasons().count("MonitorDown") == 1

        m.site.status = 200
        await m.next_check()
        st = m.status()
        assert (st["state"], st["notifiedState"]) == ("Up", "Up")
        assert [p["state"] for p in m.hooks.posts] == ["Down", "Up"]
        up = m.hooks.posts[1]
        assert up["previousState"] == "Down" and up["downtimeSeconds"] == 40.0  # Down at check 4, Up at 8
        assert m.w.events.reasons() == ["MonitorUp", "MonitorDown", "MonitorUp"]
        assert "(down for 40s)" in m.w.events.posted[-1][2]
        assert st["uptime"]["last24h"] == pytest.approx(100 * 2 / 8, abs=0.001)
        assert [r.ok for r in m.rows.rows] == [True, False, False, False, False, False, False, True]
        assert all(r.uid == m.handle().uid and r.type == "http" for r in m.rows.rows)
        assert m.metric("supercheck_monitor_checks_total", type="http", result="failed") == 6
        assert m.metric("supercheck_monitor_check_lag_seconds_count") == 8

    scenario(go)


def test_due_times_follow_the_phase_and_rows_carry_them():
    async def go(m: MonWorld) -> None:
        http_monitor(m)
        await m.step()
        mon = m.handle()
        offset = mt.jitter_offset(mon.uid, 10)
        for _ in range(3):
            await m.next_check()
        dues = [r.due_at.timestamp() for r in m.rows.rows[1:]]
        assert [round((d - offset) % 10, 6) % 10 for d in dues] == [0, 0, 0]  # k * interval + offset
        assert [b - a for a, b in zip(dues, dues[1:], strict=False)] == pytest.approx([10, 10])
        assert all(r.checked_at >= r.due_at for r in m.rows.rows)

    scenario(go)


def test_a_flapping_site_never_alerts():
    async def go(m: MonWorld) -> None:
        http_monitor(m)
        await m.step()
        for status in (503, 200, 503, 503, 200, 503, 200):
            m.site.status = status
            await m.next_check()
        assert m.status()["state"] == "Up" and m.hooks.posts == []
        assert m.w.events.reasons() == ["MonitorUp"]

    scenario(go)


def test_on_filters_the_messages():
    async def go(m: MonWorld) -> None:
        http_monitor(m, failureThreshold=1, notify=[{"url": m.hooks.url("/down"), "on": ["Down"]},
                                                    {"url": m.hooks.url("/up"), "on": ["Up"]}])
        await m.step()
        m.site.status = 500
        await m.next_check()
        m.site.status = 200
        await m.next_check()
        assert [p["state"] for p in m.hooks.posts] == ["Down", "Up"]  # one each: /down then /up
        assert len(m.status()["notifications"]) == 1  # the last change's targets

    scenario(go)


def test_a_webhook_url_from_a_secret():
    async def go(m: MonWorld) -> None:
        m.w.kube.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook", "namespace": "ns"},
                      "data": {"url": base64.b64encode(m.hooks.url().encode()).decode()}})
        http_monitor(m, failureThreshold=1, notify=[{"urlFrom": {"secretKeyRef": {"name": "hook", "key": "url"}}},
                                                    {"urlFrom": {"secretKeyRef": {"name": "hook", "key": "nope"}}}])
        m.site.status = 500
        await m.step()
        st = m.status()
        assert st["state"] == "Down" and [p["state"] for p in m.hooks.posts] == ["Down"]
        ok, missing = st["notifications"]
        assert ok["ok"] and ok["target"] == f"http://127.0.0.1:{m.hooks.port}/hook"  # no query: no token
        assert not missing["ok"] and missing["message"] == "Secret hook has no key nope: not sent"
        assert "NotificationFailed" in m.w.events.reasons()

    scenario(go)


# ---------------------------------------------------------------- status writes


def test_a_steady_monitor_writes_its_status_at_the_refresh_only():
    async def go(m: MonWorld) -> None:
        http_monitor(m)
        await m.step()
        first = m.writes()
        for _ in range(12):  # 120 s of good checks at 10 s; refresh 60 s
            await m.next_check()
        assert m.writes() - first == 2
        assert m.status()["checks"] in (7, 13)  # the last write's count (at the 6th or 12th check)

    scenario(go, monitor_status_refresh_seconds=60)


def test_each_failure_before_down_is_written_at_once():
    async def go(m: MonWorld) -> None:
        http_monitor(m)
        await m.step()
        before = m.writes()
        m.site.status = 503
        await m.next_check()
        assert m.writes() == before + 1 and m.status()["consecutiveFailures"] == 1

    scenario(go)


def test_the_api_server_away_leaves_the_status_for_the_next_step():
    async def go(m: MonWorld) -> None:
        http_monitor(m, failureThreshold=1, notify=[])
        await m.step()
        m.site.status = 503
        m.w.kube.down = True
        delay = await m.next_check()
        assert delay == m.w.eng.settings.service_retry_seconds  # tried again soon, not at the next due time
        m.w.kube.down = False
        await m.step()
        assert m.status()["state"] == "Down"

    scenario(go)


# ---------------------------------------------------------------- restart


def test_a_restarted_operator_keeps_the_phase_the_counters_and_tells_no_one_twice():
    async def go(m: MonWorld) -> None:
        http_monitor(m)
        m.site.status = 503
        await m.step()
        for _ in range(3):
            await m.next_check()
        assert m.status()["state"] == "Down" and len(m.hooks.posts) == 1
        await m.handle().flush()  # as the daemon does when it is stopped (not deleted)
        checks = m.status()["checks"]
        m.w.clock.advance(3)
        mon = m.handle(fresh=True)  # a new daemon, from the object's status
        await step(mon)
        assert mon.next_due is not None and mon.next_due > m.w.clock.now().timestamp()  # not at once
        assert (mon.next_due - mt.jitter_offset(mon.uid, 10)) % 10 == pytest.approx(0, abs=1e-6)
        await m.next_check()
        assert (mon.status.checks, mon.status.consecutiveFailures) == (checks + 1, 5)
        assert len(m.hooks.posts) == 1  # Down was told before the restart

    scenario(go)


def test_a_change_not_yet_told_before_a_crash_is_told_after_it():
    async def go(m: MonWorld) -> None:
        m.site.status = 503
        http_monitor(m)
        m.w.kube.objects[("Monitor", "ns", "shop")]["status"] = {
            "state": "Down", "since": "2030-01-01T11:00:00.000000Z", "incidentStartedAt": "2030-01-01T11:00:00.000000Z",
            "consecutiveFailures": 3, "checks": 10, "lastCheckAt": "2030-01-01T11:59:55.000000Z"}
        m.w.clock.advance(10)
        await m.next_check() if m.handle().next_due else await m.step()
        await m.next_check()
        assert [p["state"] for p in m.hooks.posts] == ["Down"]
        assert m.status()["notifiedState"] == "Down"

    scenario(go)


# ---------------------------------------------------------------- spec: headers, suspend


def test_headers_from_a_secret_and_a_missing_secret_is_no_check():
    async def go(m: MonWorld) -> None:
        m.site.body = "hello"
        http_monitor(m, http={"url": m.site.url + "echo", "bodyContains": "Bearer t0ken", "headers": [
            {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "token", "key": "value"}}},
            {"name": "X-Team", "value": "shop"}]})
        await m.step()
        st = m.status()
        assert st["state"] == "Unknown" and st["checks"] == 0
        assert st["message"] == "no check: header Authorization: Secret token not found"
        assert m.rows.rows == [] and m.site.requests == []
        m.w.kube.add({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": "ns"},
                      "data": {"value": base64.b64encode(b"Bearer t0ken").decode()}})
        m.handle()._headers = None  # (the cache would keep the answer for the refresh interval)
        await m.next_check()
        st = m.status()
        assert st["state"] == "Up", st
        assert m.site.requests[0][2]["Authorization"] == "Bearer t0ken" and m.site.requests[0][2]["X-Team"] == "shop"
        assert "t0ken" not in str(st)

    scenario(go)


def test_suspend_stops_checks_and_forgets_the_state_until_resumed():
    async def go(m: MonWorld) -> None:
        http_monitor(m)
        await m.step()
        m.w.kube.set_monitor_spec("shop", suspend=True)
        assert await m.step() == float("inf")  # until a spec change wakes it
        st = m.status()
        assert (st["state"], st["message"], st["observedGeneration"]) == ("Unknown", mt.MSG_SUSPENDED, 2)
        assert m.metric("supercheck_monitor_up", namespace="ns", monitor="shop") is None
        requests = len(m.site.requests)
        m.w.clock.advance(60)
        await m.step()
        assert len(m.site.requests) == requests
        m.w.kube.set_monitor_spec("shop", suspend=False)
        await m.step()  # checked before: it waits for its next slot
        await m.next_check()
        st = m.status()
        assert st["state"] == "Up" and st.get("message") is None and len(m.site.requests) == requests + 1

    scenario(go)


def test_a_tcp_monitor():
    async def go(m: MonWorld) -> None:
        m.w.kube.add_monitor("port", {"interval": "5s", "failureThreshold": 1,
                                      "tcp": {"host": "127.0.0.1", "port": m.site.port}})
        await m.step("port")
        assert m.status("port")["lastResult"].startswith("TCP connect in")
        await m.site.stop()
        await m.next_check("port")
        st = m.status("port")
        assert (st["state"], st["lastFailure"]["message"]) == ("Down", "connection refused")
        await m.site.start()  # the same port
        await m.next_check("port")
        assert m.status("port")["state"] == "Up"

    scenario(go)


# ---------------------------------------------------------------- synthetic checks


PLAYWRIGHT = {"script": {"inline": "import { test } from '@playwright/test';\ntest('t', async () => {});"},
              "timeoutSeconds": 60, "options": {"retries": 0},
              "env": [{"name": "TARGET", "value": "http://127.0.0.1:18090"}]}


def synthetic(m: MonWorld, **spec: Any) -> None:
    m.w.kube.add_monitor("journey", {"interval": "1m", "failureThreshold": 1, "playwright": PLAYWRIGHT,
                                     "notify": [{"url": m.hooks.url()}], **spec})


def runs(m: MonWorld) -> list[dict]:
    return [o for (k, _, _), o in sorted(m.w.kube.objects.items()) if k == "TestRun"]


def test_a_synthetic_check_is_a_testrun_owned_labelled_and_named_after_its_due_time():
    async def go(m: MonWorld) -> None:
        synthetic(m)
        await m.step("journey")
        [run] = runs(m)
        mon = m.handle("journey")
        meta = run["metadata"]
        due = int(m.w.clock.now().timestamp())
        assert meta["name"] == f"journey-{due}"
        assert meta["labels"] == {LABEL_MONITOR: "journey"} and ANNOTATION_SCHEDULED_TIME in meta["annotations"]
        assert meta["ownerReferences"] == [{"apiVersion": "supercheck.io/v1alpha1", "kind": "Monitor",
                                            "name": "journey", "uid": mon.uid, "controller": True,
                                            "blockOwnerDeletion": True}]
        spec = TestRunSpec.model_validate(run["spec"])  # a valid TestRun
        assert (spec.type, spec.priority, spec.timeoutSeconds, spec.playwright.retries) == ("playwright", 100, 60, 0)
        assert spec.env[0].name == "TARGET"
        assert m.status("journey")["lastRun"] == meta["name"]

    scenario(go)


def test_the_run_outcome_is_the_check_and_a_due_time_while_it_runs_is_skipped():
    async def go(m: MonWorld) -> None:
        synthetic(m, priority=7)
        await m.step("journey")
        [first] = runs(m)
        name = first["metadata"]["name"]
        assert first["spec"]["priority"] == 7
        await m.next_check("journey")  # still running: skipped
        assert len(runs(m)) == 1
        assert "was skipped: TestRun" in m.status("journey")["message"]
        assert m.metric("supercheck_monitor_checks_total", type="playwright", result="skipped") == 1
        m.w.kube.finish_testrun(name, "Failed", message="1 of 1 tests failed", startedAt="2030-01-01T12:00:01.000000Z",
                                completedAt="2030-01-01T12:00:31.000000Z")
        await m.step("journey")  # woken by the run's change
        st = m.status("journey")
        assert st["state"] == "Down" and st["lastLatencyMs"] == 30_000
        assert st["lastResult"] == f"TestRun {name} Failed: 1 of 1 tests failed"
        assert st["lastCheckAt"] == "2030-01-01T12:00:31.000000Z"
        assert [p["state"] for p in m.hooks.posts] == ["Down"]
        [row] = m.rows.rows
        assert (row.type, row.ok, row.latency_ms) == ("playwright", False, 30_000)
        assert row.due_at.timestamp() == int(row.due_at.timestamp())  # the run's due time (its name)
        await m.next_check("journey")
        assert len(runs(m)) == 2  # the next due time makes the next run
        second = runs(m)[-1]["metadata"]["name"]
        m.w.kube.finish_testrun(second, "Passed", result="1 passed", startedAt="2030-01-01T12:02:01.000000Z",
                                completedAt="2030-01-01T12:02:05.500000Z")
        await m.step("journey")
        st = m.status("journey")
        assert st["state"] == "Up" and st["lastResult"] == f"TestRun {second} Passed: 1 passed"
        assert [p["state"] for p in m.hooks.posts] == ["Down", "Up"]

    scenario(go)


@pytest.mark.parametrize("phase", ["Rejected", "Cancelled"])
def test_a_rejected_or_cancelled_run_is_no_check_result(phase):
    async def go(m: MonWorld) -> None:
        synthetic(m)
        await m.step("journey")
        name = runs(m)[0]["metadata"]["name"]
        m.w.kube.finish_testrun(name, phase, message="the queue is full")
        await m.step("journey")
        st = m.status("journey")
        assert (st["state"], st["checks"]) == ("Unknown", 0)
        assert st["message"] == f"no check result: TestRun {name} was {phase} (the queue is full)"
        assert m.rows.rows == []

    scenario(go)


def test_the_history_keeps_runs_history_limit_ended_runs():
    async def go(m: MonWorld) -> None:
        synthetic(m, runsHistoryLimit=2)
        await m.step("journey")
        for _ in range(4):
            name = runs(m)[-1]["metadata"]["name"]
            m.w.kube.finish_testrun(name, "Passed", completedAt=m.w.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            await m.step("journey")
            await m.next_check("journey")
        left = [r["metadata"]["name"] for r in runs(m)]
        assert len(left) == 3  # the two newest ended ones and the one running now
        assert m.status("journey")["lastRun"] == left[-1] and m.status("journey")["checks"] == 4

    scenario(go)


def test_a_restart_does_not_record_a_run_twice():
    async def go(m: MonWorld) -> None:
        synthetic(m)
        await m.step("journey")
        name = runs(m)[0]["metadata"]["name"]
        m.w.kube.finish_testrun(name, "Passed", completedAt="2030-01-01T12:00:09.000000Z")
        await m.step("journey")
        m.w.clock.advance(5)
        await m.handle("journey").flush()
        mon = m.handle("journey", fresh=True)
        await step(mon)
        assert m.status("journey")["checks"] == 1 and len(m.rows.rows) == 1

    scenario(go)


def test_the_monitor_bucket_for_a_monitor_run_end_to_end():
    """A TestRun labelled supercheck.io/monitor gets a pod whose RunnerConfig (and so its upload grant)
    names the monitor bucket; an unlabelled run of the same spec its type's bucket."""
    from engine_kit import PLAYWRIGHT as RUN_SPEC

    from supercheck import podspec
    from supercheck_contract import BUCKETS, UploadGrant

    async def go(m: MonWorld) -> None:
        w = m.w
        w.kube.add_testrun("check", RUN_SPEC, labels={LABEL_MONITOR: "journey"})
        w.kube.add_testrun("adhoc", RUN_SPEC)
        await w.settle("check")
        await w.settle("adhoc")
        pods = {p["metadata"]["labels"]["supercheck.io/testrun"]: p for p in w.kube.pods()}
        assert podspec.pod_runner_config(pods["check"]).bucket == BUCKETS["monitor"] == "playwright-monitor-artifacts"
        assert podspec.pod_runner_config(pods["adhoc"]).bucket == BUCKETS["playwright"]
        secret = w.kube.objects[("Secret", "ns", podspec.upload_secret_name(pods["check"]["metadata"]["name"]))]
        grant = UploadGrant.model_validate_json(next(iter(secret["stringData"].values())))
        assert grant.bucket == BUCKETS["monitor"]

    scenario(go)
