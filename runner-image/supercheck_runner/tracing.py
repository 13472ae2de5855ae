"""The runner's spans in its run's trace (docs/tracing.md): validation, execution, upload, one after
the other, children of the attempt span the operator named in ``TRACEPARENT``.

Off unless the pod has both ``TRACEPARENT`` and an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``): then OpenTelemetry is imported, and only then, so a run
without tracing pays nothing for it. The spans are exported in the background and flushed before
the runner exits, for at most :data:`FLUSH_SECONDS`; a collector that does not answer costs the
run nothing more, and an export problem never changes its result.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from supercheck_contract import TRACEPARENT_ENV

log = logging.getLogger(__name__)

FLUSH_SECONDS = 3.0
RUNNER_SERVICE = "supercheck-runner"
PHASES = ("validation", "execution", "upload")


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the pod is to trace: a parent to join and somewhere to send spans, not switched off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(environ.get(TRACEPARENT_ENV)) and bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def traces_endpoint(environ: Mapping[str, str]) -> str:
    """Where OTLP/HTTP spans are posted, as the specification derives it from the two variables."""
    explicit = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if explicit:
        return explicit
    return environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").rstrip("/") + "/v1/traces"


class Phases:
    """One span at a time: :meth:`enter` ends the current phase's span and starts the next one."""

    def __init__(self, tracer: Any = None, parent: Any = None, provider: Any = None,
                 attributes: Mapping[str, str | int] | None = None) -> None:
        self._tracer = tracer
        self._parent = parent
        self._provider = provider
        self._attributes = dict(attributes or {})
        self._span: Any = None

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def enter(self, name: str) -> None:
        if self._tracer is None:
            return
        try:
            self._end()
            self._span = self._tracer.start_span(name, context=self._parent, attributes=self._attributes)
        except Exception:  # tracing must not break a run
            log.exception("span %s not started", name)

    def fail(self, message: str) -> None:
        """The current phase went wrong (the script is invalid, the test could not run)."""
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, message[:512]))

    def _end(self) -> None:
        if self._span is not None:
            self._span.end()
            self._span = None

    def close(self, timeout_seconds: float = FLUSH_SECONDS) -> None:
        """End the current span and send what is left, waiting at most ``timeout_seconds``."""
        if self._provider is None:
            return
        try:
            self._end()
            self._provider.force_flush(int(timeout_seconds * 1000))
        except Exception:  # the run's result is written already; tracing must not change it
            log.exception("spans not flushed")


def start(environ: Mapping[str, str], attributes: Mapping[str, str | int] | None = None) -> Phases:
    """The runner's phases, traced when the environment asks for it (else a :class:`Phases` that does nothing)."""
    if not wanted(environ):
        return Phases()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract({"traceparent": environ[TRACEPARENT_ENV]})
        service = environ.get("OTEL_SERVICE_NAME") or RUNNER_SERVICE
        provider = TracerProvider(resource=Resource.create({"service.name": service}), shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_endpoint(environ))))
        return Phases(provider.get_tracer("supercheck.runner"), parent, provider, attributes)
    except Exception:  # a run without its spans is still a run
        log.exception("tracing not started")
        return Phases()


# The runner's phases for this process (main sets it; the engines mark where validation ends).
current = Phases()


def enter(name: str) -> None:
    current.enter(name)
