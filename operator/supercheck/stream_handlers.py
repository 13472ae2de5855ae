"""Kopf wiring of the live run streams. Thin: the hub is :mod:`supercheck.streams`, the HTTP side
:mod:`supercheck.api`, the reviews :mod:`supercheck.apiauth`.

* start-up: the :class:`~supercheck.streams.Hub` in Kopf's memo (``memo.hub``) and the API server on
  ``SUPERCHECK_API_PORT`` (none when 0). Registered after :mod:`supercheck.handlers`, whose start-up puts the
  settings in the memo.
* every TestRun and JobRun event Kopf receives (the initial listing too) is told to the hub, which publishes
  it when the phase, the attempts or the progress moved.

Only an active replica watches (Kopf peering pauses the others): a paused replica's streams stay quiet
until it becomes active, and then its hub starts from the runs' current states. With more than one
replica a stream may reach a paused one: docs/api.md says so.
"""

from __future__ import annotations

import contextlib
from typing import Any

import kopf

from supercheck.api import ApiServer, make_app
from supercheck.apiauth import Gate, KubeReviewer
from supercheck.config import Settings
from supercheck.models import VERSION
from supercheck.streams import Hub
from supercheck.vocabulary import GROUP, JOBRUNS, TESTRUNS

# The handlers below succeed on every event of every run: not worth a log line each (operator_main).
QUIET_HANDLERS = ("Handler 'testrun_streamed'", "Handler 'jobrun_streamed'")


@kopf.on.startup()
async def api_startup(memo: Any, **_: Any) -> None:
    cfg = memo.get("settings")
    if not isinstance(cfg, Settings):
        cfg = memo.settings = Settings()
    hub = memo.hub = Hub(run_history=cfg.api_run_history, ring=cfg.api_history)
    if cfg.api_port:
        server = ApiServer(make_app(hub, Gate(KubeReviewer(), cfg.api_auth_cache_seconds),
                                    heartbeat_seconds=cfg.api_heartbeat_seconds, max_streams=cfg.api_max_streams),
                           cfg.api_port)
        await server.start()
        memo.api_server = server


@kopf.on.cleanup()
async def api_cleanup(memo: Any, **_: Any) -> None:
    hub = memo.get("hub")
    if isinstance(hub, Hub):
        hub.close_all()
    server = memo.get("api_server")
    if isinstance(server, ApiServer):
        with contextlib.suppress(Exception):
            await server.stop()


def _observe(memo: Any, plural: str, type_: str | None, body: kopf.Body) -> None:
    hub = memo.get("hub")
    if isinstance(hub, Hub):
        hub.observe(plural, body, deleted=type_ == "DELETED")


@kopf.on.event(GROUP, VERSION, TESTRUNS)
def testrun_streamed(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    _observe(memo, TESTRUNS, type, body)


@kopf.on.event(GROUP, VERSION, JOBRUNS)
def jobrun_streamed(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    _observe(memo, JOBRUNS, type, body)
