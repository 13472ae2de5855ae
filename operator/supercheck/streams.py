"""The live stream of runs: what a stream event says, the hub that numbers and keeps them, the SSE framing.

Kopf hands the operator every TestRun and JobRun change (:mod:`supercheck.stream_handlers`); the hub turns
each into a :class:`StreamEvent` when something a watcher cares about moved (the phase, the attempts or the
progress counts), numbers it, keeps a bounded history (per run, and a ring for namespace streams) and wakes
the subscribers whose filter it matches. :mod:`supercheck.api` serves them as Server-Sent Events.

Ids are one sequence per hub, increasing in every stream. The sequence starts at the hub's start time in
milliseconds, so the ids of a restarted operator are above those its predecessor gave (unless it gave more
than a thousand a second): a ``Last-Event-ID`` of an earlier operator is below the hub's first id, the hub
cannot tell what was missed, and it answers with the current state, marked ``resync``.

Everything here runs on the event loop's thread, without awaiting: taking a backlog and subscribing happen
in one step, so no event falls between them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from supercheck.models import TERMINAL_PHASE_NAMES, Phase
from supercheck.vocabulary import JOBRUN_KIND, JOBRUNS, TESTRUN_KIND, TESTRUNS

KINDS = {TESTRUNS: TESTRUN_KIND, JOBRUNS: JOBRUN_KIND}
TERMINAL = TERMINAL_PHASE_NAMES

# Stream event types (the SSE ``event:`` field).
STATUS, FINAL, DELETED = "status", "final", "deleted"


@dataclass(frozen=True)
class RunKey:
    plural: str  # testruns | jobruns
    namespace: str
    name: str


@dataclass(frozen=True)
class RunState:
    """What a stream tells of a run: its phase, why, its attempts and its progress counts."""

    key: RunKey
    uid: str
    resource_version: str
    phase: str
    reason: str | None
    message: str | None
    attempts: int
    progress: Mapping[str, Any]

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    def significant(self) -> tuple[str, int, str]:
        """What makes a new event: the phase, the attempts, the progress (reason and message ride along)."""
        return self.phase, self.attempts, json.dumps(self.progress, sort_keys=True)


@dataclass(frozen=True)
class StreamEvent:
    id: int
    type: str  # STATUS | FINAL | DELETED
    state: RunState
    resync: bool = False  # the current state, sent because the events since Last-Event-ID are not kept

    @property
    def ends_run_stream(self) -> bool:
        return self.type in (FINAL, DELETED)

    def data(self) -> dict[str, Any]:
        s = self.state
        out: dict[str, Any] = {
            "kind": KINDS[s.key.plural], "namespace": s.key.namespace, "name": s.key.name, "uid": s.uid,
            "resourceVersion": s.resource_version, "phase": s.phase, "reason": s.reason, "message": s.message,
            "attempts": s.attempts, "progress": dict(s.progress), "terminal": s.terminal,
        }
        if self.type == DELETED:
            out["deleted"] = True
        if self.resync:
            out["resync"] = True
        return out


def _counts(obj: Any, keys: Iterable[str]) -> dict[str, Any] | None:
    if not isinstance(obj, Mapping):
        return None
    return {k: obj[k] for k in keys if obj.get(k) is not None}


SUMMARY_KEYS = ("total", "passed", "failed", "flaky", "skipped")
K6_KEYS = ("thresholdsPassed", "checksPassed", "checksFailed", "iterations")
JOB_PROGRESS_KEYS = ("total", "completed", "passed", "failed", "flaky", "skipped")


def run_state(plural: str, body: Mapping[str, Any]) -> RunState:
    """A TestRun's or JobRun's stream state from its object (as Kopf or the API server gives it)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    progress: dict[str, Any] = {}
    if plural == JOBRUNS:
        attempts = sum(int(s.get("attempts") or 0) for s in status.get("shards") or [] if isinstance(s, Mapping))
        if (counts := _counts(status.get("progress"), JOB_PROGRESS_KEYS)) is not None:
            progress["tests"] = counts
    else:
        attempts = int(status.get("attempts") or 0)
        if (k6 := _counts(status.get("k6"), K6_KEYS)) is not None:
            progress["k6"] = k6
    if (summary := _counts(status.get("summary"), SUMMARY_KEYS)) is not None:
        progress["summary"] = summary
    return RunState(
        key=RunKey(plural, str(meta.get("namespace") or ""), str(meta.get("name") or "")),
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        # A run the operator has not written to yet waits for admission: Pending.
        phase=str(status.get("phase") or Phase.PENDING.value),
        reason=status.get("reason"),
        message=status.get("message"),
        attempts=attempts,
        progress=progress,
    )


# ---------------------------------------------------------------- SSE framing


def frame(event: StreamEvent) -> bytes:
    """One SSE event: its id, its type, its data as one JSON line."""
    data = json.dumps(event.data(), separators=(",", ":"), sort_keys=True)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


def heartbeat() -> bytes:
    """A comment line: keeps proxies and load balancers from closing a quiet stream, and finds dead clients."""
    return b": heartbeat\n\n"


def retry_hint(milliseconds: int) -> bytes:
    """How long an EventSource waits before reconnecting."""
    return f"retry: {milliseconds}\n\n".encode()


def parse_last_event_id(value: str | None) -> int | None:
    """The client's ``Last-Event-ID``: None when absent; -1 (older than anything kept) when not an id of ours."""
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        return -1


# ---------------------------------------------------------------- subscriptions


@dataclass(eq=False)
class Subscription:
    """One open stream: its filter, the events waiting to be written, and why it ends."""

    namespace: str
    plurals: frozenset[str]
    name: str | None  # None: every run of the namespace (of these kinds)
    limit: int
    pending: deque[StreamEvent] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False  # it could not keep up: it ends, and the client resumes with Last-Event-ID
    closed: bool = False

    def wants(self, key: RunKey) -> bool:
        return (key.namespace == self.namespace and key.plural in self.plurals
                and (self.name is None or key.name == self.name))

    def push(self, event: StreamEvent) -> None:
        if self.overflowed or self.closed:
            return
        if len(self.pending) >= self.limit:
            self.overflowed = True
        else:
            self.pending.append(event)
        self.wake.set()

    def take(self) -> list[StreamEvent]:
        events = list(self.pending)
        self.pending.clear()
        self.wake.clear()
        return events

    @property
    def ended(self) -> bool:
        """Nothing more will come: closed, or overflowed and drained."""
        return (self.closed or self.overflowed) and not self.pending


@dataclass
class _Run:
    history: deque[StreamEvent]
    floor: int  # every event of this run with a greater id is in history
    latest: RunState
    deleted: bool = False


class Hub:
    """The runs' stream events: numbered, kept (bounded), handed to the subscribers that want them."""

    def __init__(self, *, run_history: int = 64, ring: int = 10_000, deleted_kept: int = 1_000,
                 subscriber_limit: int = 1_000, first_id: int | None = None) -> None:
        self.first_id = int(time.time() * 1000) if first_id is None else first_id
        self.seq = self.first_id - 1
        self.run_history = run_history
        self.subscriber_limit = subscriber_limit
        self.runs: dict[RunKey, _Run] = {}
        self.ring: deque[StreamEvent] = deque(maxlen=ring)
        self.ring_floor = self.seq
        self.deleted: OrderedDict[RunKey, None] = OrderedDict()
        self.deleted_kept = deleted_kept
        self.subscribers: set[Subscription] = set()

    # --- publishing

    def observe(self, plural: str, body: Mapping[str, Any], *, deleted: bool = False) -> StreamEvent | None:
        """A run as Kopf saw it; the event published, or None when nothing a watcher cares about moved."""
        state = run_state(plural, body)
        run = self.runs.get(state.key)
        if deleted:
            if run is None or run.deleted:
                return None
            return self._publish(DELETED, state, run)
        if run is not None and not run.deleted and run.latest.uid == state.uid \
                and run.latest.significant() == state.significant():
            run.latest = state  # a newer resourceVersion, the same story
            return None
        return self._publish(FINAL if state.terminal else STATUS, state, run)

    def _publish(self, type_: str, state: RunState, run: _Run | None) -> StreamEvent:
        self.seq += 1
        event = StreamEvent(self.seq, type_, state)
        if run is None:
            run = self.runs[state.key] = _Run(deque(maxlen=self.run_history), self.first_id - 1, state)
        if len(run.history) == run.history.maxlen:
            run.floor = run.history[0].id
        run.history.append(event)
        run.latest = state
        run.deleted = type_ == DELETED
        self.deleted.pop(state.key, None)
        if run.deleted:
            self.deleted[state.key] = None
            while len(self.deleted) > self.deleted_kept:
                gone, _ = self.deleted.popitem(last=False)
                self.runs.pop(gone, None)
        if len(self.ring) == self.ring.maxlen:
            self.ring_floor = self.ring[0].id
        self.ring.append(event)
        for sub in list(self.subscribers):
            if sub.wants(state.key):
                sub.push(event)
                if sub.overflowed:
                    self.subscribers.discard(sub)
        return event

    # --- reading

    def latest_event(self, key: RunKey) -> StreamEvent | None:
        run = self.runs.get(key)
        return run.history[-1] if run is not None and run.history else None

    def _covers(self, floor: int, last_id: int) -> bool:
        return floor <= last_id <= self.seq

    def run_backlog(self, key: RunKey, last_id: int | None) -> list[StreamEvent]:
        """What a run stream sends first: the current state (no Last-Event-ID), the events since
        ``last_id``, or the current state marked ``resync`` when those are no longer kept."""
        run = self.runs.get(key)
        if run is None or not run.history:
            return []  # not seen yet: the stream waits for it
        latest = run.history[-1]
        if last_id is None:
            return [latest]
        if self._covers(run.floor, last_id):
            return [e for e in run.history if e.id > last_id]
        return [replace(latest, resync=True)]

    def namespace_backlog(self, namespace: str, plurals: frozenset[str], last_id: int | None) -> list[StreamEvent]:
        """What a namespace stream sends first: the current state of each of its runs, or the events since
        ``last_id`` (the current states marked ``resync`` when those are no longer kept)."""
        if last_id is not None and self._covers(self.ring_floor, last_id):
            return [e for e in self.ring
                    if e.id > last_id and e.state.key.namespace == namespace and e.state.key.plural in plurals]
        current = sorted((r.history[-1] for k, r in self.runs.items()
                          if k.namespace == namespace and k.plural in plurals and r.history and not r.deleted),
                         key=lambda e: e.id)
        return current if last_id is None else [replace(e, resync=True) for e in current]

    def is_finished_for(self, key: RunKey, last_id: int | None) -> bool:
        """The run has ended and the client has its last event: nothing more will come (HTTP 204)."""
        latest = self.latest_event(key)
        return (latest is not None and latest.ends_run_stream and last_id is not None
                and latest.id <= last_id <= self.seq)

    # --- subscribing

    def subscribe(self, namespace: str, plurals: frozenset[str], name: str | None,
                  last_id: int | None) -> Subscription:
        """A new subscription, its backlog already pending: taken and registered in one step."""
        sub = Subscription(namespace, plurals, name, self.subscriber_limit)
        if name is not None:
            backlog = []
            for plural in plurals:
                backlog += self.run_backlog(RunKey(plural, namespace, name), last_id)
        else:
            backlog = self.namespace_backlog(namespace, plurals, last_id)
        # The backlog is not held to the limit (a namespace may have more runs): only live events are.
        sub.pending.extend(sorted(backlog, key=lambda e: e.id))
        if sub.pending:
            sub.wake.set()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def close_all(self) -> None:
        for sub in self.subscribers:
            sub.closed = True
            sub.wake.set()
        self.subscribers.clear()
