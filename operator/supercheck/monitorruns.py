"""Synthetic checks (``spec.playwright`` / ``spec.k6``): the TestRun a due time makes, what an ended run
says as a check, and which ended runs go. Pure functions over plain data.

Each due time makes one TestRun named ``<monitor>-<unix seconds of the due time>``: a second attempt
for the same time (a retry after the API server was away, a restarted operator) finds it there and
makes nothing. The run is owned by the Monitor (a controller ownerReference: deleting the monitor
deletes its runs) and labelled ``supercheck.io/monitor=<monitor>``, which is how its daemon is woken
when it changes and how :mod:`supercheck.podspec` sends its artifacts to the monitor bucket
(``playwright-monitor-artifacts``). It goes through the capacity ledger like any run, at the
monitor's priority (default ``SUPERCHECK_MONITOR_PRIORITY``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from supercheck.clock import iso, parse_iso
from supercheck.models import API_VERSION
from supercheck.monitoring import CheckResult
from supercheck.monitormodels import K6Check, MonitorSpec, PlaywrightCheck
from supercheck.podspec import MAX_NAME, bounded_name
from supercheck.vocabulary import (
    ANNOTATION_SCHEDULED_TIME,
    LABEL_MONITOR,
    MONITOR_KIND,
    TESTRUN_KIND,
)

PASSED = "Passed"
GOOD_OR_BAD = frozenset({"Passed", "Failed", "TimedOut", "Error"})  # a check result
MAX_LABEL_VALUE = 63
NO_RESULT = frozenset({"Rejected", "Cancelled"})  # ended without testing the site


def monitor_label(name: str) -> str:
    """The monitor's name as a label value: itself, or, beyond a label value's 63 characters, cut and made
    unique by a hash of the whole name (as a RunSchedule's label)."""
    return bounded_name(name, "", MAX_LABEL_VALUE)


def run_name(monitor: str, due: float) -> str:
    """``<monitor>-<unix seconds>``, at most 63 characters, as a RunSchedule's runs: the runner pods' names
    and labels are made from it; a longer monitor name is cut and made unique by a hash of the whole name."""
    return bounded_name(monitor, f"-{int(due)}", MAX_NAME)


def synthetic_check(spec: MonitorSpec) -> tuple[str, PlaywrightCheck | K6Check] | None:
    if spec.playwright is not None:
        return "playwright", spec.playwright
    if spec.k6 is not None:
        return "k6", spec.k6
    return None


def testrun_for(namespace: str, name: str, uid: str, spec: MonitorSpec, due: float,
                default_priority: int) -> dict[str, Any]:
    """The TestRun of the check due at ``due`` (epoch seconds)."""
    found = synthetic_check(spec)
    if found is None:
        raise ValueError("not a synthetic monitor: it has no spec.playwright or spec.k6")
    kind, check = found
    run_spec: dict[str, Any] = {
        "type": kind,
        "script": check.script.model_dump(mode="json", exclude_none=True),
        "priority": spec.priority if spec.priority is not None else default_priority,
    }
    if check.timeoutSeconds is not None:
        run_spec["timeoutSeconds"] = check.timeoutSeconds
    if check.env:
        run_spec["env"] = [e.model_dump(mode="json", exclude_none=True) for e in check.env]
    if check.envFrom:
        run_spec["envFrom"] = [e.model_dump(mode="json", exclude_none=True) for e in check.envFrom]
    if check.resources is not None:
        run_spec["resources"] = check.resources.model_dump(mode="json", exclude_none=True)
    if check.options is not None:
        run_spec[kind] = check.options.model_dump(mode="json", exclude_none=True)
    return {
        "apiVersion": API_VERSION,
        "kind": TESTRUN_KIND,
        "metadata": {
            "name": run_name(name, due),
            "namespace": namespace,
            "labels": {LABEL_MONITOR: monitor_label(name)},
            "annotations": {ANNOTATION_SCHEDULED_TIME: iso(datetime.fromtimestamp(due, UTC))},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": MONITOR_KIND, "name": name, "uid": uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": run_spec,
    }


def owned_by(run: Mapping[str, Any], uid: str) -> bool:
    return any(o.get("uid") == uid and o.get("controller") for o in run["metadata"].get("ownerReferences") or [])


def monitor_uid_of(run: Mapping[str, Any]) -> str | None:
    """The uid of the Monitor controlling this TestRun, if one does."""
    for o in run.get("metadata", {}).get("ownerReferences") or []:
        if o.get("kind") == MONITOR_KIND and o.get("controller"):
            return str(o.get("uid"))
    return None


def phase_of(run: Mapping[str, Any]) -> str | None:
    return (run.get("status") or {}).get("phase")


def ended(run: Mapping[str, Any]) -> bool:
    return phase_of(run) in GOOD_OR_BAD | NO_RESULT


def due_of(run: Mapping[str, Any]) -> datetime | None:
    """The due time a run was made for (its annotation)."""
    return parse_iso((run["metadata"].get("annotations") or {}).get(ANNOTATION_SCHEDULED_TIME))


def outcome(run: Mapping[str, Any]) -> CheckResult | str | None:
    """An ended run as a check: a :class:`CheckResult` (Passed: good; Failed, TimedOut, Error: failed),
    or the message of a run that ended without a result (Rejected, Cancelled); None while it has not ended."""
    name = run["metadata"]["name"]
    st = run.get("status") or {}
    phase = st.get("phase")
    if phase in NO_RESULT:
        why = st.get("message") or st.get("reason") or ""
        return f"no check result: TestRun {name} was {phase}" + (f" ({why})" if why else "")
    if phase not in GOOD_OR_BAD:
        return None
    started, completed = parse_iso(st.get("startedAt")), parse_iso(st.get("completedAt"))
    latency = round((completed - started).total_seconds() * 1000) if started and completed else None
    if phase == PASSED:
        said = st.get("result")
        return CheckResult(True, latency, f"TestRun {name} Passed" + (f": {said}" if said else ""))
    said = st.get("message") or st.get("result") or st.get("reason") or ""
    return CheckResult(False, latency, f"TestRun {name} {phase}" + (f": {said}" if said else ""))


def checked_at(run: Mapping[str, Any], now: datetime) -> datetime:
    """When the check's result came: the run's end."""
    return parse_iso((run.get("status") or {}).get("completedAt")) or now


def runs_to_delete(runs: Sequence[Mapping[str, Any]], uid: str, keep: int) -> list[Mapping[str, Any]]:
    """The monitor's ended runs beyond the ``keep`` newest (by due time, then name), oldest first.
    Runs still active are never deleted."""
    done = [r for r in runs if owned_by(r, uid) and ended(r)]
    done.sort(key=lambda r: ((due_of(r) or datetime.min.replace(tzinfo=UTC)), r["metadata"]["name"]))
    return done[: max(0, len(done) - keep)]
