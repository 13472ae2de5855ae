"""The operator's HTTP API: the live stream of runs as Server-Sent Events (docs/api.md).

* ``GET /api/v1/namespaces/{ns}/{testruns|jobruns}/{name}/events`` — one run: its current state, then
  an event at each change of phase, attempts or progress; the stream ends after the terminal event
  (``final``) or the run's deletion (``deleted``). A run not seen yet is waited for.
* ``GET /api/v1/namespaces/{ns}/events`` — every TestRun and JobRun of the namespace (those the token may
  watch): the current state of each, then their changes; it does not end.

Each request is reviewed by :class:`supercheck.apiauth.Gate` (401, 403, or 503 when the API server does not
answer). ``Last-Event-ID`` (header, or the ``lastEventId`` query parameter) resumes a stream; a comment
line every ``heartbeat`` seconds keeps it open through proxies and finds clients that left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

from supercheck.apiauth import Access, Decision, Gate
from supercheck.streams import Hub, RunKey, Subscription, frame, heartbeat, parse_last_event_id, retry_hint
from supercheck.vocabulary import JOBRUNS, TESTRUNS

log = logging.getLogger(__name__)

HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
GATE: web.AppKey[Gate] = web.AppKey("gate", Gate)
HEARTBEAT: web.AppKey[float] = web.AppKey("heartbeat", float)
MAX_STREAMS: web.AppKey[int] = web.AppKey("max_streams", int)
OPEN: web.AppKey[set[Subscription]] = web.AppKey("open", set)
RETRY_MS = 2000

RUN_KINDS = f"{{plural:{TESTRUNS}|{JOBRUNS}}}"


def make_app(hub: Hub, gate: Gate, *, heartbeat_seconds: float = 15.0, max_streams: int = 5000) -> web.Application:
    app = web.Application()
    app[HUB] = hub
    app[GATE] = gate
    app[HEARTBEAT] = heartbeat_seconds
    app[MAX_STREAMS] = max_streams
    app[OPEN] = set()
    app.router.add_get(f"/api/v1/namespaces/{{namespace}}/{RUN_KINDS}/{{name}}/events", run_events)
    app.router.add_get("/api/v1/namespaces/{namespace}/events", namespace_events)
    app.router.add_get("/healthz", healthz)
    app.on_shutdown.append(_close_streams)
    return app


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def status_body(code: int, message: str) -> web.Response:
    """A Kubernetes-style Status, as the API server answers a refused request."""
    reasons = {401: "Unauthorized", 403: "Forbidden", 429: "TooManyRequests", 503: "ServiceUnavailable"}
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "reason": reasons.get(code, ""), "code": code}
    headers = {"WWW-Authenticate": 'Bearer realm="supercheck"'} if code == 401 else None
    return web.Response(status=code, text=json.dumps(body), content_type="application/json", headers=headers)


def _last_event_id(request: web.Request) -> int | None:
    return parse_last_event_id(request.headers.get("Last-Event-ID") or request.query.get("lastEventId"))


async def _review(request: web.Request, wanted: list[Access]) -> Decision:
    return await request.app[GATE].check(request.headers.get("Authorization"), wanted)


async def run_events(request: web.Request) -> web.StreamResponse:
    ns, plural, name = request.match_info["namespace"], request.match_info["plural"], request.match_info["name"]
    decision = await _review(request, [Access(ns, plural, name)])
    if decision.status != 200:
        return status_body(decision.status, decision.message)
    hub = request.app[HUB]
    last_id = _last_event_id(request)
    if hub.is_finished_for(RunKey(plural, ns, name), last_id):
        return web.Response(status=204)  # an EventSource stops reconnecting
    return await _stream(request, hub.subscribe(ns, frozenset({plural}), name, last_id), ends_with_run=True)


async def namespace_events(request: web.Request) -> web.StreamResponse:
    ns = request.match_info["namespace"]
    decision = await _review(request, [Access(ns, TESTRUNS), Access(ns, JOBRUNS)])
    if decision.status != 200:
        return status_body(decision.status, decision.message)
    sub = request.app[HUB].subscribe(ns, decision.allowed, None, _last_event_id(request))
    return await _stream(request, sub, ends_with_run=False)


async def _stream(request: web.Request, sub: Subscription, *, ends_with_run: bool) -> web.StreamResponse:
    app = request.app
    hub, beat = app[HUB], app[HEARTBEAT]
    if len(app[OPEN]) >= app[MAX_STREAMS]:
        hub.unsubscribe(sub)
        return status_body(429, f"the operator serves at most {app[MAX_STREAMS]} streams at once")
    app[OPEN].add(sub)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})  # nginx: pass each event on at once
    try:
        await resp.prepare(request)
        await resp.write(retry_hint(RETRY_MS))
        while True:
            if not sub.pending and not sub.ended:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), beat)
            events = sub.take()
            if events:
                await resp.write(b"".join(frame(e) for e in events))
                if ends_with_run and any(e.ends_run_stream for e in events):
                    break
            elif sub.ended:
                break
            else:
                await resp.write(heartbeat())
    except ConnectionResetError:
        pass  # the client left: nothing to finish
    finally:
        hub.unsubscribe(sub)
        app[OPEN].discard(sub)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write_eof()
    return resp


async def _close_streams(app: web.Application) -> None:
    app[HUB].close_all()
    opened: set[Subscription] = app[OPEN]
    for sub in list(opened):
        sub.closed = True
        sub.wake.set()


class ApiServer:
    """The API's aiohttp site on a port (0: chosen by the OS; see ``port`` once started)."""

    def __init__(self, app: web.Application, port: int, host: str = "0.0.0.0") -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.requested_port)
        await site.start()
        server: Any = site._server  # the bound socket's port, when 0 was asked for
        self.port = server.sockets[0].getsockname()[1] if server and server.sockets else self.requested_port
        log.info("API (live run streams) on :%d/api/v1", self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
