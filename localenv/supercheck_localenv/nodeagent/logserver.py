"""The kubelet endpoint the API server proxies `kubectl logs` to, over HTTPS.

``GET /containerLogs/{namespace}/{pod}/{container}`` with kubelet's query parameters:
``follow``, ``tailLines``, ``limitBytes``, ``timestamps``, ``sinceSeconds``, ``sinceTime``
and ``previous``; ``GET /healthz``. Exec, attach and port-forward need a container
runtime this agent does not have; they answer 501 with a message that says so.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from . import logformat

log = logging.getLogger(__name__)

FOLLOW_POLL_SECONDS = 0.1


class LogLookupError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class LogSource:
    path: Path  # the attempt's CRI log file
    live: Callable[[], bool]  # whether more output may still be appended


Resolver = Callable[[str, str, str, bool], LogSource]


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def _int(query, name: str) -> int | None:
    if name not in query:
        return None
    try:
        return int(query[name])
    except ValueError:
        raise LogLookupError(400, f"invalid {name}: {query[name]!r}") from None


def since_ns(query) -> int | None:
    secs = _int(query, "sinceSeconds")
    if secs is not None:
        return time.time_ns() - secs * 1_000_000_000
    if query.get("sinceTime"):
        try:
            return logformat.parse_timestamp(query["sinceTime"])
        except ValueError:
            raise LogLookupError(400, f"invalid sinceTime: {query['sinceTime']!r}") from None
    return None


class LogServer:
    def __init__(self, resolver: Resolver, *, address: str, port: int, cert: str, key: str,
                 client_ca: str | None = None):
        self._resolver = resolver
        self._address, self._port = address, port
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(cert, key)
        if client_ca:
            self._ssl.load_verify_locations(client_ca)
            self._ssl.verify_mode = ssl.CERT_REQUIRED
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        for prefix in ("/exec", "/attach", "/portForward", "/run"):
            app.router.add_route("*", prefix + "/{tail:.*}", self.unsupported)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._address, self._port, ssl_context=self._ssl)
        await site.start()
        log.info("serving container logs on https://%s:%d", self._address, self._port)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def unsupported(self, request: web.Request) -> web.Response:
        return web.Response(status=501, text=(
            "the supercheck node agent runs containers as local processes and supports only "
            "`kubectl logs`; exec, attach and port-forward are not available\n"))

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        ns, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            follow = _flag(q.get("follow"))
            tail = _int(q, "tailLines")
            limit = _int(q, "limitBytes")
            since = since_ns(q)
            timestamps = _flag(q.get("timestamps"))
            source = self._resolver(ns, pod, container, _flag(q.get("previous")))
        except LogLookupError as exc:
            return web.Response(status=exc.status, text=exc.message)

        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        budget = limit if limit is not None and limit >= 0 else None
        offset, partial = 0, False

        async def send(data: bytes) -> bool:
            """Write within limitBytes; False when the budget is spent."""
            nonlocal budget
            if budget is not None:
                data = data[:budget]
                budget -= len(data)
            if data:
                await resp.write(data)
            return budget is None or budget > 0

        def read_new() -> list[logformat.LogRecord]:
            nonlocal offset
            try:
                with open(source.path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                return []
            end = data.rfind(b"\n") + 1  # only whole records; the rest is still being written
            offset += end
            return logformat.parse_records(data[:end])

        loop = asyncio.get_running_loop()
        try:
            # file reads off the event loop: a long log must not stall the node's heartbeat
            records = logformat.select(await loop.run_in_executor(None, read_new), tail_lines=tail, since_ns=since)
            data, partial = logformat.render(records, timestamps=timestamps)
            more = await send(data)
            while follow and more:
                live = source.live()  # asked before reading: output written before exit is never missed
                records = await loop.run_in_executor(None, read_new)
                if since is not None:
                    records = [r for r in records if r.time_ns >= since]
                if records:
                    data, partial = logformat.render(records, timestamps=timestamps, after_partial=partial)
                    more = await send(data)
                elif not live:
                    break
                else:
                    await asyncio.sleep(FOLLOW_POLL_SECONDS)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away (kubectl logs -f interrupted)
        return resp
