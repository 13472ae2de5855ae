"""The runner's shell: whatever goes wrong, it ends with a contract exit code and a termination message."""

from __future__ import annotations

import subprocess

import pytest

from supercheck_contract import ExitCode, FailureClass, decode_termination_message

from .conftest import RUNNER

pytestmark = pytest.mark.integration  # both run supercheck-runner as a subprocess


def test_a_misconfigured_pod_still_says_why(tmp_path):
    termination = tmp_path / "termination"
    proc = subprocess.run([str(RUNNER)], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "SUPERCHECK_TERMINATION_MESSAGE_PATH": str(termination),
                               "SUPERCHECK_TYPE": "playwright"})
    assert proc.returncode == ExitCode.INFRASTRUCTURE, proc.stdout + proc.stderr
    result = decode_termination_message(termination.read_text())
    assert result.failureClass == FailureClass.INFRASTRUCTURE
    assert result.message.startswith("runner misconfigured") and "scriptPath" in result.message


def test_an_unknown_type_is_validation(run_runner):
    run = run_runner("jmeter", "whatever\n")
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert "unknown test type 'jmeter'" in run.result.message
