"""What an engine (Playwright, k6, validation) hands back, and how it becomes the contract's result."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from supercheck_contract import (
    ArtifactFile,
    ArtifactLocation,
    FailureClass,
    K6Summary,
    RunnerResult,
    TestEnded,
    TestSummary,
    encode_termination_message,
    exit_code_for,
)

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def first_line(text: str, limit: int = 200) -> str:
    line = next((ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


DETAIL_PREFIXES = ("Locator:", "Expected:", "Received:", "Expected pattern:", "Received string:", "Call log:")


def error_summary(text: str, limit: int = 400) -> str:
    """An assertion error in one line: its first line, then what was expected and received."""
    lines = [ln.strip() for ln in strip_ansi(text).splitlines() if ln.strip()]
    if not lines:
        return ""
    parts = [lines[0]] + [ln for ln in lines[1:12] if ln.startswith(DETAIL_PREFIXES[:-1])]
    summary = " — ".join(parts)
    return summary if len(summary) <= limit else summary[: limit - 1] + "…"


@dataclass
class EngineOutcome:
    failure: FailureClass
    message: str
    summary: TestSummary | None = None
    k6: K6Summary | None = None
    report: str | None = None  # path of the HTML report, relative to the artifact folder
    uploaded: list[ArtifactFile] = field(default_factory=list)  # set by the upload step, for result.json
    not_uploaded: list[str] = field(default_factory=list)
    tests: list[TestEnded] = field(default_factory=list)  # a job's shard: each test file that ended, as announced


def build_result(outcome: EngineOutcome, artifacts: ArtifactLocation | None, duration_ms: int) -> RunnerResult:
    return RunnerResult(
        exitCode=int(exit_code_for(outcome.failure)),
        failureClass=outcome.failure,
        message=outcome.message,
        summary=outcome.summary,
        k6=outcome.k6,
        artifacts=artifacts,
        durationMs=duration_ms,
        uploaded=outcome.uploaded,
        notUploaded=outcome.not_uploaded,
        tests=outcome.tests,
    )


def write_termination_message(result: RunnerResult, path: Path) -> str | None:
    """Write the compact result where Kubernetes reads it. Returns an error text instead of raising:
    outside a pod the path may not be writable, and the exit code still speaks."""
    try:
        path.write_text(encode_termination_message(result))
        return None
    except OSError as exc:
        return f"could not write the termination message to {path}: {exc}"
