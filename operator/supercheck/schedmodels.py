"""The RunSchedule vocabulary: a TestRun or JobRun template started on a cron schedule.

The semantics are a CronJob's (docs/schedules-and-monitors.md): each scheduled time makes at most one
run, named after the schedule and that time and owned by the schedule; ``concurrencyPolicy`` says
what a due time does while an earlier run is still active; missed times are caught up at most once,
within ``startingDeadlineSeconds``. `supercheck.crdgen` turns these models into the CRD.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from supercheck.jobmodels import JobRunSpec
from supercheck.models import Condition, TestRunSpec, _Model

# A Go-style duration, as `@every` and Monitor.interval take it: 90s, 1m30s, 1h, 500ms.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# Standard 5-field cron (minute hour day-of-month month day-of-week), a predefined macro, or @every.
SCHEDULE_PATTERN = (r"^(@every ([0-9]+(\.[0-9]+)?(ms|s|m|h))+|@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
                    r"|[^\s]+ [^\s]+ [^\s]+ [^\s]+ [^\s]+)$")
MSG_ONE_TEMPLATE = "set exactly one of spec.testRun (a TestRun's spec) or spec.jobRun (a JobRun's spec)"

ConcurrencyPolicy = Literal["Allow", "Forbid", "Replace"]


class RunScheduleSpec(_Model):
    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        {"rule": "has(self.testRun) != has(self.jobRun)", "message": MSG_ONE_TEMPLATE}]})

    schedule: str = Field(
        min_length=1, max_length=256, pattern=SCHEDULE_PATTERN,
        description="Standard 5-field cron ('*/15 * * * *': minute hour day-of-month month day-of-week), "
                    "a macro (@hourly, @daily, @weekly, @monthly, @yearly) or '@every <duration>' "
                    "(e.g. @every 20s, @every 1h30m) for short intervals")
    timeZone: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="IANA time zone of the cron fields (e.g. Europe/Berlin); default UTC")
    testRun: TestRunSpec | None = Field(default=None, description="The spec of each TestRun the schedule creates")
    jobRun: JobRunSpec | None = Field(default=None, description="The spec of each JobRun the schedule creates")
    concurrencyPolicy: ConcurrencyPolicy = Field(
        default="Allow",
        description="A due time while an earlier run is active: Allow (start another), Forbid (skip this time), "
                    "Replace (cancel the active run, start the new one)")
    startingDeadlineSeconds: int | None = Field(
        default=None, ge=1, le=31_536_000,
        description="A time missed (operator down, schedule suspended) is still started if at most this late; "
                    "only the latest missed time is started. Default: a missed time is started however late")
    suspend: bool = Field(default=False, description="No new runs while true (active runs go on)")
    successfulRunsHistoryLimit: int = Field(default=3, ge=0, le=1000,
                                            description="Passed runs kept; older ones are deleted")
    failedRunsHistoryLimit: int = Field(default=1, ge=0, le=1000,
                                        description="Runs kept that ended otherwise (Failed, Error, TimedOut, ...)")

    @model_validator(mode="after")
    def _one_template(self) -> RunScheduleSpec:
        if (self.testRun is None) == (self.jobRun is None):
            raise ValueError(MSG_ONE_TEMPLATE)
        return self

    @property
    def kind(self) -> str:
        return "TestRun" if self.testRun is not None else "JobRun"


class ScheduledRunRef(_Model):
    """A run the schedule created."""

    kind: Literal["TestRun", "JobRun"]
    name: str
    scheduledTime: str | None = Field(default=None, description="The due time it was created for")


class LastRun(ScheduledRunRef):
    phase: str | None = None
    result: str | None = None
    completedAt: str | None = None


class RunScheduleStatus(_Model):
    lastScheduleTime: str | None = Field(default=None, description="The latest time a run was created for")
    nextScheduleTime: str | None = Field(default=None, description="The next due time (none while suspended)")
    lastSuccessfulTime: str | None = Field(default=None, description="When the latest passed run ended")
    lastSkippedTime: str | None = Field(default=None,
                                        description="The latest due time skipped (Forbid with a run active)")
    active: list[ScheduledRunRef] = Field(default_factory=list, description="The schedule's runs not yet ended")
    lastRun: LastRun | None = Field(default=None, description="The latest run that ended")
    passedRuns: int = Field(default=0, description="Runs of this schedule that passed, ever")
    failedRuns: int = Field(default=0, description="Runs of this schedule that ended otherwise, ever")
    skippedRuns: int = Field(default=0, description="Due times skipped by concurrencyPolicy Forbid, ever")
    countedRuns: list[str] = Field(default_factory=list,
                                   description="Ended runs still present and already in the counts (bookkeeping)")
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observedGeneration: int | None = None
