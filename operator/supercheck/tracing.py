"""One OpenTelemetry trace per run: what its spans are (pure) and how they are exported.

A run's life is spread over many daemon steps and may outlive the operator process, so no span is
held open in memory: each is recorded once its facts are known, with explicit start and end times,
as a child of the run's root span. The root's ids are fixed for the run: derived from its uid and
written to the status at admission (``status.traceId``, ``status.traceParent``), so a restarted
operator continues the same trace. Every other span id is derived from the trace id and the span's
key (``attempt 2``), so the runner pod can be given its attempt span as parent (``TRACEPARENT``)
before that span is recorded, when the pod has ended.

Export is configured by the standard ``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_TRACES_EXPORTER``, ``OTEL_SERVICE_NAME``,
``OTEL_SDK_DISABLED``); without an endpoint nothing is recorded and the status carries no trace.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from supercheck_contract import TRACEPARENT_ENV

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

log = logging.getLogger(__name__)

Attributes = Mapping[str, str | int | float | bool]

OPERATOR_SERVICE = "supercheck-operator"
RUNNER_PHASES = ("validation", "execution", "upload")  # the runner's spans (supercheck_runner.tracing.PHASES)
RUNNER_SERVICE = "supercheck-runner"
MERGE = "merge"  # a JobRun's merge pod, as its shard (supercheck.jobpods.MERGE_SHARD)

# The operator's OTLP settings that a runner pod gets too (its spans go to the same collector).
# Headers are not among them: they may carry a collector's credentials, and a run's code reads its
# pod's environment.
RUNNER_OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_TRACES_EXPORTER",
)
# Overrides the endpoint given to runner pods, for a collector they reach by another address.
RUNNER_ENDPOINT_ENV = "SUPERCHECK_RUNNER_OTLP_ENDPOINT"

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


# ---------------------------------------------------------------- ids and traceparent (pure)

def _hex_id(seed: str, digits: int) -> str:
    h = hashlib.sha256(seed.encode()).hexdigest()[:digits]
    return h if int(h, 16) else "1".rjust(digits, "0")  # an all-zero id is invalid in W3C and OTLP


def format_traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    """W3C Trace Context: ``00-<trace id>-<parent span id>-<flags>``."""
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, span id) of a W3C ``traceparent``, or None when it is not one (or its ids are zero)."""
    m = _TRACEPARENT.match((value or "").strip().lower())
    if m is None or not int(m.group(1), 16) or not int(m.group(2), 16):
        return None
    return m.group(1), m.group(2)


@dataclass(frozen=True)
class RunTrace:
    """A run's trace: its id and its root span ("run")."""

    trace_id: str
    root_span_id: str

    @classmethod
    def for_run(cls, uid: str, traceparent: str | None = None) -> RunTrace:
        """The run's trace: the one in its status when there is one, else the one derived from its uid
        (the same in every operator process, so writing it twice is harmless)."""
        parsed = parse_traceparent(traceparent)
        if parsed is not None:
            return cls(*parsed)
        return cls(_hex_id(f"supercheck-trace:{uid}", 32), _hex_id(f"supercheck-root:{uid}", 16))

    def span_id(self, key: str) -> str:
        """A child span's id, the same whichever process records it."""
        return _hex_id(f"{self.trace_id}:{key}", 16)

    @property
    def traceparent(self) -> str:
        return format_traceparent(self.trace_id, self.root_span_id)

    def traceparent_of(self, key: str) -> str:
        return format_traceparent(self.trace_id, self.span_id(key))

    def status_fields(self) -> dict[str, str]:
        """What the status keeps: the trace id to look it up, the root's traceparent to continue it."""
        return {"traceId": self.trace_id, "traceParent": self.traceparent}


def attempt_key(attempt: int, shard: str | None = None) -> str:
    """An attempt span's key and name: ``attempt 2`` (a TestRun's), ``shard 1 attempt 2`` or
    ``merge attempt 1`` (a JobRun's shard or merge pod: ``shard`` is its pod's, "1".."N" or "merge")."""
    if shard is None:
        return f"attempt {attempt}"
    return f"{shard if shard == MERGE else f'shard {shard}'} attempt {attempt}"


def dispatch_key(attempt: int, shard: str | None = None) -> str:
    return f"dispatch {attempt}" if shard is None else f"shard {shard} dispatch {attempt}"


# ---------------------------------------------------------------- the spans of a run (pure)

@dataclass(frozen=True)
class SpanRecord:
    """One finished span: its name, ids, times and attributes. ``error``: the span failed, and why."""

    name: str
    span_id: str
    parent_id: str | None
    start: datetime
    end: datetime
    attributes: Attributes = field(default_factory=dict)
    error: str | None = None


def _ordered(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    return start, max(start, end)  # clocks of two writers may disagree by a little: never a negative span


def _run_attributes(namespace: str, name: str, uid: str) -> dict[str, str]:
    return {"supercheck.namespace": namespace, "supercheck.run": name, "supercheck.uid": uid}


def run_span(trace: RunTrace, namespace: str, name: str, uid: str, test_type: str, created: datetime,
             completed: datetime, phase: str, reason: str | None, kind: str = "TestRun") -> SpanRecord:
    """The root: from the run's creation (a TestRun or a JobRun: ``kind``) to its terminal phase."""
    start, end = _ordered(created, completed)
    attrs = {**_run_attributes(namespace, name, uid), "supercheck.kind": kind, "supercheck.type": test_type,
             "supercheck.phase": phase}
    if reason:
        attrs["supercheck.reason"] = reason
    failed = phase not in ("Passed", "Failed")  # a test that failed is a run that worked
    return SpanRecord("run", trace.root_span_id, None, start, end, attrs,
                      error=f"{phase}: {reason}" if failed else None)


def admission_span(trace: RunTrace, created: datetime, decided: datetime, outcome: str,
                   position: int | None = None) -> SpanRecord:
    """From the run's creation to the ledger's answer: run now, queue, or reject."""
    start, end = _ordered(created, decided)
    attrs: dict[str, str | int] = {"supercheck.admission": outcome}
    if position is not None:
        attrs["supercheck.queue.position"] = position
    return SpanRecord("admission", trace.span_id("admission"), trace.root_span_id, start, end, attrs,
                      error="rejected" if outcome == "rejected" else None)


def queue_wait_span(trace: RunTrace, queued: datetime, granted: datetime) -> SpanRecord:
    """From joining the queue to the running slot's grant."""
    start, end = _ordered(queued, granted)
    return SpanRecord("queue wait", trace.span_id("queue wait"), trace.root_span_id, start, end)


def _shard_attributes(attempt: int, shard: str | None) -> dict[str, str | int]:
    attrs: dict[str, str | int] = {"supercheck.attempt": attempt}
    if shard is not None:
        attrs["supercheck.shard"] = shard
    return attrs


def dispatch_span(trace: RunTrace, attempt: int, since: datetime, created: datetime, pod: str,
                  shard: str | None = None) -> SpanRecord:
    """From the slot's grant (a retry: its launch) to the attempt's pod created (a JobRun: the shard's)."""
    start, end = _ordered(since, created)
    return SpanRecord("dispatch", trace.span_id(dispatch_key(attempt, shard)), trace.root_span_id, start, end,
                      {**_shard_attributes(attempt, shard), "k8s.pod.name": pod})


def attempt_span(trace: RunTrace, attempt: int, created: datetime, ended: datetime, pod: str | None,
                 failure_class: str, exit_code: int | None, message: str | None,
                 shard: str | None = None) -> SpanRecord:
    """Attempt N (a JobRun: of shard ``shard``, or of its merge): from its pod's creation to its end;
    the runner's spans are its children."""
    start, end = _ordered(created, ended)
    attrs = {**_shard_attributes(attempt, shard), "supercheck.failure_class": failure_class}
    if pod:
        attrs["k8s.pod.name"] = pod
    if exit_code is not None:
        attrs["supercheck.exit_code"] = exit_code
    ok = failure_class in ("none", "test_failure")  # a test that failed is an attempt that worked
    key = attempt_key(attempt, shard)
    return SpanRecord(key, trace.span_id(key), trace.root_span_id, start, end, attrs,
                      error=None if ok else (message or failure_class)[:512])


# ---------------------------------------------------------------- configuration (pure)

def exporter_choice(environ: Mapping[str, str]) -> tuple[str | None, str]:
    """Which exporter the standard variables ask for ("otlp", "console" or None: off), and why."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None, "OTEL_SDK_DISABLED=true"
    wanted = [e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    if "console" in wanted:
        return "console", "OTEL_TRACES_EXPORTER=console"
    if wanted and "otlp" not in wanted:
        return None, f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']}"
    if not (environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return None, "no OTEL_EXPORTER_OTLP_ENDPOINT"
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    if protocol != "http/protobuf":
        return None, f"OTLP protocol {protocol!r}: only http/protobuf is supported"
    return "otlp", "OTLP over HTTP"


def traces_endpoint(environ: Mapping[str, str]) -> str:
    """Where OTLP/HTTP spans are posted, as the specification derives it from the two variables."""
    explicit = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if explicit:
        return explicit
    return environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318").rstrip("/") + "/v1/traces"


def runner_env(environ: Mapping[str, str], trace: RunTrace, attempt: int, shard: str | None = None) -> dict[str, str]:
    """What a runner pod needs to join the run's trace: ``TRACEPARENT`` (its attempt span as parent;
    a JobRun's: its shard's or merge's) and the operator's OTLP settings
    (``SUPERCHECK_RUNNER_OTLP_ENDPOINT``: another endpoint for pods)."""
    env = {k: environ[k] for k in RUNNER_OTEL_VARIABLES if environ.get(k)}
    override = environ.get(RUNNER_ENDPOINT_ENV)
    if override:
        env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = override
    env["OTEL_SERVICE_NAME"] = RUNNER_SERVICE
    env[TRACEPARENT_ENV] = trace.traceparent_of(attempt_key(attempt, shard))
    return env


# ---------------------------------------------------------------- export (the SDK, imperative)

class RunTracer:
    """Records :class:`SpanRecord` s through the OpenTelemetry SDK; disabled: does nothing."""

    def __init__(self, provider: TracerProvider | None = None, environ: Mapping[str, str] | None = None,
                 ids: _ChosenIds | None = None) -> None:
        self._provider = provider
        self._environ = dict(environ or {})
        self._ids = ids
        self._tracer = provider.get_tracer("supercheck.operator") if provider is not None else None

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def trace_for(self, uid: str, status: Mapping[str, Any] | None) -> RunTrace:
        return RunTrace.for_run(uid, (status or {}).get("traceParent"))

    def runner_env(self, trace: RunTrace, attempt: int, shard: str | None = None) -> dict[str, str]:
        return runner_env(self._environ, trace, attempt, shard) if self.enabled else {}

    def record(self, trace: RunTrace, span: SpanRecord) -> None:
        """Export one finished span with its own ids; an export problem never reaches the run."""
        if self._tracer is None or self._ids is None:
            return
        try:
            self._record(trace, span)
        except Exception:  # tracing must not break a run
            log.exception("span %r of trace %s not recorded", span.name, trace.trace_id)

    def _record(self, trace: RunTrace, span: SpanRecord) -> None:
        from opentelemetry import trace as otel
        from opentelemetry.context import Context
        from opentelemetry.trace import Status, StatusCode

        assert self._tracer is not None and self._ids is not None
        if span.parent_id is None:
            ctx = Context()
        else:
            parent = otel.SpanContext(int(trace.trace_id, 16), int(span.parent_id, 16), is_remote=True,
                                      trace_flags=otel.TraceFlags(otel.TraceFlags.SAMPLED))
            ctx = otel.set_span_in_context(otel.NonRecordingSpan(parent), Context())
        token = self._ids.chosen.set((int(trace.trace_id, 16), int(span.span_id, 16)))
        try:
            sdk_span = self._tracer.start_span(span.name, context=ctx, attributes=dict(span.attributes),
                                               start_time=_ns(span.start))
        finally:
            self._ids.chosen.reset(token)
        if span.error:
            sdk_span.set_status(Status(StatusCode.ERROR, span.error))
        sdk_span.end(end_time=_ns(span.end))

    def flush(self, timeout_seconds: float = 5.0) -> bool:
        if self._provider is None:
            return True
        return bool(self._provider.force_flush(int(timeout_seconds * 1000)))

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()


def _ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000_000)


class _ChosenIds:
    """The SDK's id generator, told which ids the next span gets (a run's ids are fixed, not random)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        self.chosen: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
            "supercheck_span_ids", default=None)
        self._random = RandomIdGenerator()

    def generate_trace_id(self) -> int:
        chosen = self.chosen.get()
        return chosen[0] if chosen else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        chosen = self.chosen.get()
        return chosen[1] if chosen else self._random.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return self.chosen.get() is None  # a run's trace id is derived from its uid (a hash, not W3C random)


def tracer_with(processor: SpanProcessor, environ: Mapping[str, str] | None = None,
                service: str = OPERATOR_SERVICE) -> RunTracer:
    """A tracer exporting through ``processor`` (tests: an in-memory exporter's)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    env = environ or {}
    ids = _ChosenIds()
    provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service}),
                              id_generator=ids, shutdown_on_exit=False)  # type: ignore[arg-type]
    provider.add_span_processor(processor)
    return RunTracer(provider, env, ids)


def from_env(environ: Mapping[str, str]) -> RunTracer:
    """The operator's tracer, as the standard ``OTEL_*`` variables say; disabled without an exporter."""
    choice, why = exporter_choice(environ)
    if choice is None:
        log.info("tracing off: %s", why)
        return RunTracer()
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if choice == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The endpoint from ``environ``; headers, timeout, compression from the process's OTEL_EXPORTER_OTLP_*.
        exporter = OTLPSpanExporter(endpoint=traces_endpoint(environ))
    log.info("tracing on: %s", why)
    return tracer_with(BatchSpanProcessor(exporter), environ)
