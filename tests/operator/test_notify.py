"""Webhook notifications: which targets fire, the body, and delivery to a real receiver on loopback
(an aiohttp server in the test's event loop, on a port of 18700-18799)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from operator_kit import free_port

from supercheck.jobrows import TEST_OUTCOMES, JobRow, JobTestRow
from supercheck.models import TERMINAL_PHASES
from supercheck.notify import USER_AGENT, Delivery, deliver, fires, safe_url, summary_payload

TERMINAL = {p.value for p in TERMINAL_PHASES}
TOKEN = "s3cr3t-t0ken"
PASSWORD = "hunter2-pass"


# ---------------------------------------------------------------- pure


def test_fires_for_terminal_phases_only_as_on_says():
    assert all(fires(p, None, terminal_phases=TERMINAL) for p in TERMINAL)
    assert all(fires(p, [], terminal_phases=TERMINAL) for p in TERMINAL)
    assert not fires("Running", None, terminal_phases=TERMINAL)
    assert not fires("Running", ["Running"], terminal_phases=TERMINAL)  # never before the end
    assert fires("Failed", ["Failed", "Error"], terminal_phases=TERMINAL)
    assert not fires("Passed", ["Failed", "Error"], terminal_phases=TERMINAL)


def job(**kw) -> JobRow:
    base = dict(uid="u-1", namespace="ns", name="nightly", type="playwright", phase="Failed", final=True,
                reason="TestsFailed", message="3 of 60 tests failed", total=60, completed=60, passed=55, failed=3,
                flaky=1, skipped=1, not_run=0, started_at="2030-01-01T00:00:00.000000Z",
                completed_at="2030-01-01T00:01:30.250000Z", report_bucket="reports",
                report_prefix="ns/nightly/u-1", report_key="ns/nightly/u-1/report/index.html")
    base.update(kw)
    return JobRow(**base)


def test_summary_payload():
    tests = [JobTestRow(name="a", outcome="failed"), JobTestRow(name="b", outcome="flaky"),
             JobTestRow(name="c", outcome="passed"), JobTestRow(name="d", outcome="failed")]
    body = summary_payload(job(), tests)
    assert body == {
        "kind": "JobRun", "namespace": "ns", "name": "nightly", "uid": "u-1", "phase": "Failed",
        "reason": "TestsFailed", "message": "3 of 60 tests failed",
        "counts": {"total": 60, "passed": 55, "failed": 3, "flaky": 1, "skipped": 1, "notRun": 0},
        "failedTests": ["a", "d"],
        "report": {"bucket": "reports", "key": "ns/nightly/u-1/report/index.html"},
        "durationMs": 90250, "startedAt": "2030-01-01T00:00:00.000000Z",
        "completedAt": "2030-01-01T00:01:30.250000Z",
    }
    assert json.loads(json.dumps(body)) == body


def test_summary_payload_caps_failed_tests_and_has_null_report_without_one():
    tests = [JobTestRow(name=f"t{i:03}", outcome=TEST_OUTCOMES[i % 2]) for i in range(200)]  # passed, failed...
    body = summary_payload(job(report_key=None, duration_ms=5, started_at=None, completed_at=None), tests,
                           kind="TestRun")
    assert body["failedTests"] == [f"t{i:03}" for i in range(1, 100, 2)]  # the first 50, in the order given
    assert body["report"] is None and body["durationMs"] == 5 and body["kind"] == "TestRun"
    assert summary_payload(job(phase="Cancelled", started_at=None))["durationMs"] is None


@pytest.mark.parametrize("url, safe", [
    (f"https://user:{PASSWORD}@hooks.example.com/a/b?token={TOKEN}#x", "https://hooks.example.com/a/b"),
    ("http://127.0.0.1:18765/hook", "http://127.0.0.1:18765/hook"),
    (f"http://[::1]:8080/h?t={TOKEN}", "http://[::1]:8080/h"),
    ("http://host:99999999/h", "<invalid URL>"),
])
def test_safe_url(url, safe):
    assert safe_url(url) == safe


# ---------------------------------------------------------------- a real receiver


@dataclass
class Receiver:
    """Answers each POST with the next status of ``script`` (200 when it runs out); ``sleep`` seconds first."""

    script: list[int]
    sleep: float = 0.0
    port: int = 0
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)

    def url(self, path: str = "/hook", query: str = "", userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{path}{query}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(time.monotonic())
        self.requests.append((request.method, request.path_qs, dict(request.headers), await request.read()))
        if self.sleep:
            await asyncio.sleep(self.sleep)
        status = self.script.pop(0) if self.script else 200
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": self.url("/elsewhere")})
        return web.Response(status=status, text="answer")


@contextlib.asynccontextmanager
async def receiver(*script: int, sleep: float = 0.0) -> AsyncIterator[Receiver]:
    rec = Receiver(list(script), sleep)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    for _ in range(5):  # another test run may take the port between the check and the bind
        rec.port = free_port()
        try:
            await web.TCPSite(runner, "127.0.0.1", rec.port).start()
            break
        except OSError:
            continue
    try:
        yield rec
    finally:
        await runner.cleanup()


PAYLOAD = {"kind": "JobRun", "name": "nightly", "counts": {"failed": 1}}


def run(coro):
    return asyncio.run(coro)


def test_one_post_on_success():
    async def go():
        async with receiver(200) as rec:
            got = await deliver(rec.url(query=f"?token={TOKEN}"), PAYLOAD)
        return rec, got

    rec, got = run(go())
    assert got == Delivery(ok=True, status=200, tries=1, error=None)
    assert len(rec.requests) == 1
    method, path, headers, body = rec.requests[0]
    assert method == "POST" and path == f"/hook?token={TOKEN}"  # the receiver gets its token, of course
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == USER_AGENT and USER_AGENT.startswith("supercheck/0.")
    assert json.loads(body) == PAYLOAD


@pytest.mark.parametrize("first", [500, 503, 429])
def test_a_5xx_or_429_is_tried_again(first):
    async def go():
        async with receiver(first, 200) as rec:
            got = await deliver(rec.url(), PAYLOAD, backoff_seconds=0.05)
        return rec, got

    rec, got = run(go())
    assert got == Delivery(ok=True, status=200, tries=2)
    assert [r[0] for r in rec.requests] == ["POST", "POST"] and rec.requests[0][3] == rec.requests[1][3]


def test_the_backoff_doubles():
    async def go():
        async with receiver(500, 502, 504) as rec:
            t0 = time.monotonic()
            got = await deliver(rec.url(), PAYLOAD, tries=3, backoff_seconds=0.2)
            return rec, got, time.monotonic() - t0

    rec, got, took = run(go())
    assert got.ok is False and got.status == 504 and got.tries == 3 and got.error == (
        f"POST {rec.url()}: HTTP 504 Gateway Timeout")
    gaps = [b - a for a, b in zip(rec.arrivals, rec.arrivals[1:], strict=False)]
    assert 0.2 <= gaps[0] < 0.4 and 0.4 <= gaps[1] < 0.6, gaps  # 0.2 s, then twice that
    assert 0.6 <= took < 1.2, took


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_another_4xx_is_not_tried_again(status):
    async def go():
        async with receiver(status) as rec:
            got = await deliver(rec.url(query=f"?token={TOKEN}"), PAYLOAD, backoff_seconds=0.05)
        return rec, got

    rec, got = run(go())
    assert got.ok is False and got.status == status and got.tries == 1 and len(rec.requests) == 1
    assert got.error is not None and got.error.startswith(f"POST {rec.url()}: HTTP {status} ")
    assert TOKEN not in got.error


def test_a_redirect_is_not_followed():
    async def go():
        async with receiver(302) as rec:
            got = await deliver(rec.url(), PAYLOAD, backoff_seconds=0.05)
        return rec, got

    rec, got = run(go())
    assert got == Delivery(False, 302, 1, f"POST {rec.url()}: HTTP 302 Found (redirects are not followed)")
    assert [(r[0], r[1]) for r in rec.requests] == [("POST", "/hook")]


def test_a_dead_port_is_tried_three_times_then_given_up(caplog):
    port = free_port()  # nothing listens there
    url = f"http://robot:{PASSWORD}@127.0.0.1:{port}/hook?token={TOKEN}&team=qa"
    caplog.set_level(logging.INFO, logger="supercheck.notify")
    t0 = time.monotonic()
    got = run(deliver(url, PAYLOAD, backoff_seconds=0.1))
    took = time.monotonic() - t0
    assert got.ok is False and got.status is None and got.tries == 3
    assert 0.3 <= took < 0.8, took  # waits 0.1 s then 0.2 s; a refused connection is immediate
    assert got.error is not None and got.error.startswith(f"POST http://127.0.0.1:{port}/hook: cannot connect: ")
    for text in (got.error, caplog.text):
        assert TOKEN not in text and PASSWORD not in text and "robot" not in text and "team=qa" not in text


def test_no_answer_in_time_is_tried_again():
    async def go():
        async with receiver(200, 200, 200, sleep=0.5) as rec:
            t0 = time.monotonic()
            got = await deliver(rec.url(query=f"?token={TOKEN}", userinfo=f"robot:{PASSWORD}@"), PAYLOAD,
                                backoff_seconds=0.05, timeout_seconds=0.2)
            return rec, got, time.monotonic() - t0

    rec, got, took = run(go())
    assert got == Delivery(False, None, 3, f"POST {rec.url()}: no answer within 0.2 s")
    assert len(rec.requests) == 3 and 0.75 <= took < 1.3, took


@pytest.mark.parametrize("url", ["not a url", f"ftp://127.0.0.1/hook?token={TOKEN}", f"http://:{TOKEN}@/x",
                                 "http://host:99999999/x"])
def test_an_invalid_url_is_an_answer_not_an_exception(url):
    got = run(deliver(url, PAYLOAD, backoff_seconds=0.05))
    assert got.ok is False and got.status is None and got.tries <= 1
    assert got.error and TOKEN not in got.error


def test_a_payload_that_is_not_json_is_an_answer_too():
    got = run(deliver("http://127.0.0.1:1/x", {"when": object()}))
    assert got.ok is False and got.tries == 0 and got.error and "not JSON" in got.error


def test_the_callers_session_is_used_and_left_open():
    async def go():
        async with receiver(503, 200) as rec, aiohttp.ClientSession() as session:
            got = await deliver(rec.url(), PAYLOAD, session=session, backoff_seconds=0.01)
            assert not session.closed
            return got

    assert run(go()) == Delivery(True, 200, 2)
