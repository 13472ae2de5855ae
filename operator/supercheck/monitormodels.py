"""The Monitor vocabulary: one check of a site every ``interval``, with a state, uptime and alerts.

``http`` and ``tcp`` checks are made by the operator itself; ``playwright`` and ``k6`` checks run a
script as a TestRun (a runner pod through the capacity ledger, artifacts in
``playwright-monitor-artifacts``). ``failureThreshold`` failed checks in a row turn a monitor
``Down``, ``successThreshold`` good ones turn it ``Up``; each change makes an Event and one webhook
POST per target (docs/schedules-and-monitors.md). `supercheck.crdgen` turns these models into the CRD.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from supercheck.models import (
    Condition,
    EnvFromSource,
    EnvVar,
    K6Options,
    Notification,
    PlaywrightOptions,
    Resources,
    ScriptSource,
    SecretKeyRef,
    WebhookTarget,
    _Model,
)
from supercheck.schedmodels import DURATION_PATTERN

MonitorState = Literal["Up", "Down", "Unknown"]
UP, DOWN, UNKNOWN = "Up", "Down", "Unknown"
CHECK_KINDS = ("http", "tcp", "playwright", "k6")
MSG_ONE_CHECK = "set exactly one of spec.http, spec.tcp, spec.playwright or spec.k6"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


class HeaderValueFrom(_Model):
    secretKeyRef: SecretKeyRef


class HttpHeader(_Model):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.value) != has(self.valueFrom)",
         "message": "set exactly one of headers[].value or headers[].valueFrom.secretKeyRef (for a token)"}]})

    name: str = Field(min_length=1, max_length=256, pattern=HEADER_NAME_PATTERN)
    value: str | None = Field(default=None, max_length=8192, description="Visible to every reader of the Monitor")
    valueFrom: HeaderValueFrom | None = None

    @model_validator(mode="after")
    def _one_value(self) -> HttpHeader:
        if (self.value is None) == (self.valueFrom is None):
            raise ValueError("set exactly one of headers[].value or headers[].valueFrom.secretKeyRef")
        return self


class HttpCheck(_Model):
    url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$", description="http(s) URL")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: list[HttpHeader] = Field(default_factory=list, max_length=32)
    body: str | None = Field(default=None, max_length=65536, description="Request body (POST, PUT, PATCH)")
    expectedStatus: list[int] = Field(
        default_factory=list, max_length=32,
        description="Status codes that count as up; default any 2xx (after redirects, when followed)")
    bodyContains: str | None = Field(default=None, min_length=1, max_length=1024,
                                     description="Text the response body must contain")
    timeoutSeconds: float = Field(default=10, gt=0, le=120, description="The whole request, connection included")
    tlsVerify: bool = Field(default=True, description="Check the server's certificate (false: accept any)")
    followRedirects: bool = True


class TcpCheck(_Model):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    timeoutSeconds: float = Field(default=10, gt=0, le=120, description="Time to connect")


class _SyntheticCheck(_Model):
    script: ScriptSource
    timeoutSeconds: int | None = Field(default=None, ge=1, le=86400,
                                       description="One check's budget; default TEST_EXECUTION_TIMEOUT_MS / 1000")
    env: list[EnvVar] = Field(default_factory=list, max_length=256)
    envFrom: list[EnvFromSource] = Field(default_factory=list, max_length=32)
    resources: Resources | None = None


class PlaywrightCheck(_SyntheticCheck):
    options: PlaywrightOptions | None = Field(default=None, description="As a TestRun's spec.playwright")


class K6Check(_SyntheticCheck):
    options: K6Options | None = Field(default=None, description="As a TestRun's spec.k6")


class MonitorNotifyTarget(WebhookTarget):
    """A webhook POSTed a JSON message when the monitor goes Down and when it recovers."""

    on: list[Literal["Down", "Up"]] = Field(default_factory=list, max_length=2,
                                            description="Down, Up (recovered); default both")


class MonitorSpec(_Model):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "[has(self.http), has(self.tcp), has(self.playwright), has(self.k6)].filter(x, x).size() == 1",
         "message": MSG_ONE_CHECK}]})

    interval: str = Field(default="60s", max_length=32, pattern=DURATION_PATTERN,
                          description="Time between checks, e.g. 30s, 5m (at least 1s)")
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    playwright: PlaywrightCheck | None = Field(default=None, description="A synthetic check: a Playwright script")
    k6: K6Check | None = Field(default=None, description="A synthetic check: a k6 script")
    failureThreshold: int = Field(default=3, ge=1, le=100, description="Failed checks in a row that make it Down")
    successThreshold: int = Field(default=1, ge=1, le=100, description="Good checks in a row that make it Up")
    priority: int | None = Field(default=None, ge=-1000, le=1000,
                                 description="Synthetic checks' priority in the queue; "
                                             "default SUPERCHECK_MONITOR_PRIORITY")
    suspend: bool = Field(default=False, description="No checks while true")
    runsHistoryLimit: int = Field(default=3, ge=0, le=100, description="Synthetic checks' TestRuns kept")
    notify: list[MonitorNotifyTarget] = Field(default_factory=list, max_length=10,
                                              description="Webhooks told when it goes Down and when it recovers")

    @model_validator(mode="after")
    def _one_check(self) -> MonitorSpec:
        if sum(getattr(self, k) is not None for k in CHECK_KINDS) != 1:
            raise ValueError(MSG_ONE_CHECK)
        return self

    @property
    def check_kind(self) -> str:
        return next(k for k in CHECK_KINDS if getattr(self, k) is not None)


class Uptime(_Model):
    last24h: float | None = Field(default=None, description="Percent of good checks in the last 24 hours")
    last7d: float | None = Field(default=None, description="Percent of good checks in the last 7 days")


class UptimeBucket(_Model):
    """The checks of one hour (168 kept: 7 days), from which uptime is computed."""

    hour: str = Field(description="Start of the hour (UTC)")
    checks: int = 0
    failures: int = 0


class LastFailure(_Model):
    at: str
    message: str


class MonitorStatus(_Model):
    state: MonitorState | None = None
    since: str | None = Field(default=None, description="When the monitor entered its state")
    lastCheckAt: str | None = None
    lastLatencyMs: int | None = None
    lastResult: str | None = Field(default=None, description="The last check in words, e.g. HTTP 200 in 12 ms")
    consecutiveFailures: int = 0
    consecutiveSuccesses: int = 0
    checks: int = Field(default=0, description="Checks made, ever")
    uptime: Uptime | None = None
    uptimeBuckets: list[UptimeBucket] = Field(default_factory=list)
    lastFailure: LastFailure | None = None
    incidentStartedAt: str | None = Field(default=None, description="When the current (or last) outage began")
    notifiedState: MonitorState | None = Field(
        default=None, description="The state the webhooks were last told of (one message per change)")
    notifications: list[Notification] = Field(default_factory=list)
    lastRun: str | None = Field(default=None, description="Synthetic checks: the latest TestRun")
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observedGeneration: int | None = None
