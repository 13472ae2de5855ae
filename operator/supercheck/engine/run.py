"""One run as the engine handles it: its newest known body, status patches that never overwrite a
newer decision, its Events and its runner pods."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from supercheck.engine.context import Engine
from supercheck.pods import PodView
from supercheck.ports import Conflict
from supercheck.redact import redact, redact_fields
from supercheck.transitions import with_lifecycle
from supercheck.vocabulary import PLURALS, TESTRUN_KIND

Body = dict[str, Any]

# How long a first status write waits for Kopf's finalizer to show on a new run (see RunHandle.patch).
FINALIZER_WAIT_SECONDS = 1.0
FINALIZER_POLL_SECONDS = 0.002


def resource_version(body: Mapping[str, Any]) -> int:
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return -1


def body_ref(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


class RunHandle:
    """``live`` is Kopf's view, refreshed by the watch; ``latest`` our own newest write, until the
    watch catches up. ``pods`` lists the run's runner pods (Kopf's index, passed in explicitly)."""

    live: Mapping[str, Any]

    def __init__(self, eng: Engine, body: Mapping[str, Any],
                 pods: Callable[[], list[PodView]] = lambda: [],
                 logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
                 finalizer: str | None = None) -> None:
        self.eng = eng
        self.finalizer = finalizer  # Kopf's, when Kopf drives the run (its live body shows it)
        # Kopf's per-object logger when driven by Kopf (its warnings become Events too).
        self.log: logging.Logger | logging.LoggerAdapter[Any] = logger or logging.getLogger(__name__)
        self.live = body
        self.latest: Body | None = None
        self.pods = pods
        meta = body["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.kind: str = str(body.get("kind") or TESTRUN_KIND)
        self.plural: str = PLURALS.get(self.kind, PLURALS[TESTRUN_KIND])
        self.recorded_start: set[int] = set()
        self.progress_read_at: datetime | None = None  # when the runner's log tail was last read

    def body(self) -> Body:
        live = dict(self.live)
        if self.latest is not None and resource_version(self.latest) > resource_version(live):
            return self.latest
        return live

    async def refresh(self) -> Body | None:
        fresh = await self.eng.kube.get_run(self.namespace, self.name, self.plural)
        if fresh is not None and fresh["metadata"]["uid"] == self.uid:
            self.latest = fresh
            return fresh
        return None

    async def patch(self, body: Body, status_patch: dict[str, Any]) -> Body:
        """A status merge patch, applied only if nobody changed the run's spec or status since we read it.

        A change of metadata alone (Kopf's finalizer, annotations) does not invalidate a decision
        taken on the status: the patch is retried once against the fresh resourceVersion.

        Every reader of the run sees its status: the free-text fields (messages, a test's failure)
        are redacted (:func:`supercheck.redact.redact_fields`) whatever error they quote.

        Every write carries the lifecycle conditions of the phase it leaves the run in, and the
        spec's generation it was decided on (:func:`supercheck.transitions.with_lifecycle`): the
        terminal phase and Completed/Succeeded/Ready/Stalled land in one write, never apart.
        """
        kube = self.eng.kube
        body = await self._with_finalizer(body)
        status_patch = with_lifecycle(body.get("status"), redact_fields(status_patch),
                                      body["metadata"].get("generation"), self.eng.clock.now())
        rv = body["metadata"].get("resourceVersion")
        try:
            updated = await kube.patch_status(self.namespace, self.name, status_patch, rv, self.plural)
        except Conflict:
            fresh = await self.refresh()
            if fresh is None or fresh.get("status") != body.get("status") or fresh.get("spec") != body.get("spec"):
                raise
            updated = await kube.patch_status(self.namespace, self.name, status_patch,
                                              fresh["metadata"].get("resourceVersion"), self.plural)
        self.latest = updated
        return updated

    async def _with_finalizer(self, body: Body) -> Body:
        """Kopf starts a new run's daemon and adds its finalizer in the same event cycle, so a first
        status write made at once meets a newer resourceVersion: a 409, a read, a second write. Wait
        (briefly, bounded) until Kopf's live view shows the finalizer, and write against that view if
        the run's spec and status are still those the decision was taken on."""
        meta = body["metadata"]
        if self.finalizer is None or self.finalizer in (meta.get("finalizers") or []) or meta.get("deletionTimestamp"):
            return body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINALIZER_WAIT_SECONDS
        while loop.time() < deadline:
            live = self.body()
            if self.finalizer in (live["metadata"].get("finalizers") or []):
                same = live.get("status") == body.get("status") and live.get("spec") == body.get("spec")
                return dict(live) if same else body
            await asyncio.sleep(FINALIZER_POLL_SECONDS)
        return body

    def event(self, body: Body, type_: str, reason: str, message: str) -> None:
        self.eng.events.post(body, type_, reason, redact(message)[:1024])

    def pod(self, name: str | None) -> PodView | None:
        for view in self.pods():
            if view.name == name:
                return view
        return None

    def live_pods(self) -> list[PodView]:
        return [v for v in self.pods() if v.live]

    def extra_labels(self, body: Body) -> list[str]:
        return self.eng.extra_labels(body)
