"""The CPU a run costs (issue 14): the operator's pods upload through their grant, so the runner
must not import boto3 (and s3transfer, botocore's session) for them; only a runner with a key of
its own (standalone) needs it. Python's own import log (PYTHONPROFILEIMPORTTIME) says what a real
run imported; no mocks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from supercheck_contract import ExitCode

from .conftest import grant_minter

TRIVIAL_K6 = "export const options = { vus: 1, iterations: 1 };\nexport default function () {}\n"
# What only a key's client or a multipart upload needs.
SDK_MODULES = ("boto3", "s3transfer", "botocore.session", "botocore.client")


def imported(import_log: str) -> set[str]:
    """The modules named by ``-X importtime`` lines ("import time: self | cumulative | name")."""
    return {line.rsplit("|", 1)[1].strip() for line in import_log.splitlines() if line.startswith("import time:")
            and "|" in line}


def test_importing_the_runner_imports_no_sdk():
    code = f"import supercheck_runner.__main__, sys; print([m for m in {SDK_MODULES!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.stdout.strip() == "[]"


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_run_with_a_grant_never_imports_boto3_and_one_with_a_key_does(run_runner, s3_endpoint):
    log = {"PYTHONPROFILEIMPORTTIME": "1"}
    with_grant = run_runner("k6", TRIVIAL_K6, env=log, grant=grant_minter(s3_endpoint))
    assert with_grant.exit_code == ExitCode.PASSED, with_grant.output
    assert "[supercheck] uploaded " in with_grant.output
    modules = imported(with_grant.output)
    assert "supercheck_runner.grant" in modules and "urllib3" in modules  # the log is the run's
    assert not modules & set(SDK_MODULES), sorted(modules & set(SDK_MODULES))

    with_key = run_runner("k6", TRIVIAL_K6, env=log)
    assert with_key.exit_code == ExitCode.PASSED, with_key.output
    assert {"boto3", "s3transfer"} <= imported(with_key.output)
