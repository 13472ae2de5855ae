"""Following a run until it ends: the loop over its changes, with a clock and a deadline.

The events come from a :class:`Source` (the API server's watch in :mod:`supercheck.cli.kubeapi`,
a list in the tests); the loop renders each change, ticks the renderer while nothing happens, and
stops at a terminal phase, when the run is deleted, or at the deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from supercheck.cli.render import Renderer
from supercheck.cli.view import view

TICK_SECONDS = 1.0

Body = dict[str, Any]


class Source(Protocol):
    def next(self, timeout: float) -> tuple[str, Body] | None:
        """The next event (``ADDED``/``MODIFIED``/``DELETED``, the object), or None after ``timeout``."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Followed:
    body: Body | None  # the run as last seen
    ended: bool = False  # a terminal phase
    gone: bool = False  # deleted before it ended
    timed_out: bool = False  # the CLI's --timeout


def follow(kind: str, source: Source, renderer: Renderer, now: Callable[[], float], started: float,
           deadline: float) -> Followed:
    last: Body | None = None
    while True:
        t = now()
        if t >= deadline:
            return Followed(last, timed_out=True)
        event = source.next(min(TICK_SECONDS, deadline - t))
        elapsed = now() - started
        if event is None:
            renderer.tick(elapsed)
            continue
        kind_of_event, body = event
        if kind_of_event == "DELETED":
            return Followed(last or body, gone=True)
        last = body
        v = view(kind, body)
        renderer.update(v, elapsed)
        if v.terminal:
            return Followed(body, ended=True)


def resubmit_delay(body: Body | None, done: int, limit: int) -> int | None:
    """Seconds to wait before creating a Rejected run again, or None when it must not be."""
    st = (body or {}).get("status") or {}
    if st.get("phase") != "Rejected" or done >= limit:
        return None
    return max(1, int(st.get("retryAfterSeconds") or 1))
