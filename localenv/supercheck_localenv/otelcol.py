"""The local environment's trace sink: a minimal OpenTelemetry Collector (the OTLP receiver and the
file exporter only; hack/otelcol, built from the Go module proxy by hack/build-otelcol.sh) writing
every span it receives to one JSON file, one OTLP/JSON export request a line.

Started with the operator when tracing is on (``SUPERCHECK_TRACING=1``: supercheck_localenv.cli),
on PORTS.otlp_grpc / PORTS.otlp_http, writing .dev/data/otel/traces.json; the tests start their own
on free ports (tests/operator/test_tracing_collector.py). :func:`read_spans` reads the file back.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supercheck_localenv.layout import REPO_ROOT

TRACES_FILE = "traces.json"


def binary(root: Path = REPO_ROOT, build: bool = True) -> Path:
    """The collector hack/build-otelcol.sh built (building it first when ``build``; minutes cold)."""
    script = root / "hack" / "build-otelcol.sh"
    args = [str(script)] if build else [str(script), "--cached"]
    res = subprocess.run(args, stdout=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise FileNotFoundError(f"the OpenTelemetry Collector is not built: run {script}" if not build
                                else f"{script} failed (exit {res.returncode})")
    return Path(res.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Collector:
    """One collector: its folder (config and traces file) and its two OTLP ports, on loopback."""

    data_dir: Path
    grpc_port: int
    http_port: int

    @property
    def traces_file(self) -> Path:
        return self.data_dir / TRACES_FILE

    @property
    def config_file(self) -> Path:
        return self.data_dir / "otelcol.json"

    @property
    def endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT is set to (OTLP over HTTP; the SDK adds /v1/traces)."""
        return f"http://127.0.0.1:{self.http_port}"

    def config(self) -> dict[str, Any]:
        # JSON is YAML: the collector's file provider reads it as is. No telemetry of its own on a port.
        return {
            "receivers": {"otlp": {"protocols": {
                "grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                "http": {"endpoint": f"127.0.0.1:{self.http_port}"},
            }}},
            "exporters": {"file": {"path": str(self.traces_file), "format": "json", "flush_interval": "100ms"}},
            "service": {
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
            },
        }

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(self.config(), indent=2))

    def argv(self, collector: Path) -> list[str]:
        return [str(collector), f"--config=file:{self.config_file}"]

    def ready(self) -> bool:
        for port in (self.grpc_port, self.http_port):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
            except OSError:
                return False
        return True


def _value(v: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in v:
            return v[key]
    if "intValue" in v:
        return int(v["intValue"])  # OTLP/JSON writes 64-bit integers as strings
    return v


def _attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value") or {}) for a in items or []}


def read_spans(path: Path) -> Iterator[dict[str, Any]]:
    """Every span in the file exporter's output, flattened: name, traceId, spanId, parentSpanId (""
    for a root), start/end in ns, attributes, status, and its resource's ``service.name`` as service."""
    if not path.is_file():
        return
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for rs in json.loads(line).get("resourceSpans") or []:
            service = _attributes((rs.get("resource") or {}).get("attributes")).get("service.name")
            for ss in rs.get("scopeSpans") or []:
                for span in ss.get("spans") or []:
                    yield {
                        "name": span.get("name"),
                        "traceId": span.get("traceId", ""),
                        "spanId": span.get("spanId", ""),
                        "parentSpanId": span.get("parentSpanId", ""),
                        "start": int(span.get("startTimeUnixNano", 0)),
                        "end": int(span.get("endTimeUnixNano", 0)),
                        "attributes": _attributes(span.get("attributes")),
                        "status": span.get("status") or {},
                        "service": service,
                    }
