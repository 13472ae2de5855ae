"""Crash safety and leak repair: the operator SIGKILLed, Redis wiped, PostgreSQL stopped — mid-burst;
and S3 stopped while a run uploads, or before it starts."""

from __future__ import annotations

import json
import os
import time
import urllib.request

import psycopg
import pytest
from operator_kit import (
    SLEEPY_K6,
    TERMINAL,
    Sampler,
    create,
    events_for,
    get_run,
    list_runs,
    make_run,
    phase,
    rows_for,
    wait_all_terminal,
    wait_for,
    wait_ledger_zero,
)

pytestmark = pytest.mark.cluster


def burst(custom_objects, namespace, n, sleep="1", prefix="r"):
    for i in range(n):
        create(custom_objects, namespace, make_run(f"{prefix}-{i:02d}", SLEEPY_K6, i % 3,
                                                  env=[{"name": "SLEEP", "value": sleep}]))


def count_terminal(custom_objects, namespace) -> int:
    return sum(phase(r) in TERMINAL for r in list_runs(custom_objects, namespace))


def assert_clean_finish(runs, sampler, capacity):
    """Every run passed; never more than `capacity` pods running, never two pods of one run at once;
    each attempt had exactly one pod. A retry is tolerated only for a failure of the runner itself
    (not a lost pod: nothing here deletes pods, so a lost pod would be the operator's doing)."""
    not_passed = {r["metadata"]["name"]: (r["status"]["phase"], r["status"].get("message")) for r in runs
                  if r["status"]["phase"] != "Passed"}
    assert not not_passed, not_passed
    lost = {r["metadata"]["name"]: r["status"]["attemptHistory"] for r in runs
            if any(h.get("failureClass") == "pod_lost" for h in r["status"]["attemptHistory"])}
    assert not lost, lost
    assert 1 <= sampler.max_running <= capacity, sampler.max_running
    assert sampler.max_running_per_run <= 1
    attempts = {r["metadata"]["name"]: r["status"]["attempts"] for r in runs}
    wrong = {run: pods for run, pods in sampler.pods_seen.items()
             if pods != {f"{run}-a{n}" for n in range(1, attempts.get(run, 1) + 1)}}
    assert not wrong, f"pods other than one per attempt: {wrong}"


def metric(name: str) -> float:
    url = os.environ.get("SUPERCHECK_METRICS_URL", "http://127.0.0.1:18080/metrics")
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


def test_operator_sigkilled_mid_burst_and_restarted(operator_ctl, namespace, core_v1, custom_objects,
                                                   redis_client, db_conn):
    config = dict(RUNNING_CAPACITY="3", QUEUED_CAPACITY="50")
    operator_ctl.start(**config)
    with Sampler(core_v1, namespace, redis_client) as sampler:
        burst(custom_objects, namespace, 18)
        wait_for(lambda: count_terminal(custom_objects, namespace) >= 4, 120, what="a few runs done")
        operator_ctl.kill()
        time.sleep(3)  # runs go on finishing, nobody is watching
        operator_ctl.start(**config)
        runs = wait_all_terminal(custom_objects, namespace, 18, timeout=300)
        wait_ledger_zero(redis_client)
    assert_clean_finish(runs, sampler, 3)
    try:
        wait_for(lambda: len(rows_for(db_conn, namespace)) == 18, 60, what="18 rows")
    except AssertionError:
        have = {r[0] for r in rows_for(db_conn, namespace)}
        raise AssertionError({r["metadata"]["name"]: r["status"].get("recorded")
                              for r in list_runs(custom_objects, namespace)
                              if r["metadata"]["name"] not in have}) from None


def test_redis_restarted_empty_mid_burst(operator_ctl, services, namespace, core_v1, custom_objects, redis_client,
                                         db_conn):
    operator_ctl.start(RUNNING_CAPACITY="3", QUEUED_CAPACITY="50")
    rebuilds_before = metric("supercheck_ledger_rebuilds_total")
    with Sampler(core_v1, namespace, redis_client) as sampler:
        burst(custom_objects, namespace, 15, sleep="2")
        wait_for(lambda: count_terminal(custom_objects, namespace) >= 3, 120, what="a few runs done")
        services.redis_restart_empty()
        # The ledger is rebuilt from the cluster, not restarted at zero while pods run.
        wait_for(lambda: redis_client.exists("supercheck:ledger:epoch"), 30, what="the ledger rebuilt")
        runs = wait_all_terminal(custom_objects, namespace, 15, timeout=300)
        wait_ledger_zero(redis_client)
    assert_clean_finish(runs, sampler, 3)
    assert metric("supercheck_ledger_rebuilds_total") > rebuilds_before
    wait_for(lambda: len(rows_for(db_conn, namespace)) == 15, 60, what="15 rows")


def test_postgres_stopped_for_a_while_loses_no_row(operator_ctl, services, namespace, custom_objects, kube_env):
    operator_ctl.start(RUNNING_CAPACITY="3", SUPERCHECK_SERVICE_RETRY_SECONDS="1")
    services.postgres_stop()
    burst(custom_objects, namespace, 5, sleep="0")
    runs = wait_all_terminal(custom_objects, namespace, 5, timeout=180)
    assert all(r["status"]["phase"] == "Passed" for r in runs)  # the status holds the truth meanwhile

    def waiting_on_db(run):
        return any(c["type"] == "ResultsRecorded" and c["status"] == "False" and c["reason"] == "DatabaseUnavailable"
                   for c in run["status"].get("conditions", []))
    wait_for(lambda: all(waiting_on_db(r) for r in list_runs(custom_objects, namespace)), 60,
             what="ResultsRecorded=False on every run")
    time.sleep(3)
    services.postgres_start()

    def rows():
        try:
            with psycopg.connect(kube_env.env["DATABASE_URL"], autocommit=True) as conn:
                return rows_for(conn, namespace)
        except psycopg.Error:
            return []
    got = wait_for(lambda: len(r := rows()) == 5 and r, 120, what="every row after PostgreSQL returned")
    assert all(r[2] == "Passed" and r[3] for r in got)
    wait_for(lambda: all(not waiting_on_db(r) for r in list_runs(custom_objects, namespace)), 60,
             what="ResultsRecorded=True again")


# ---------------------------------------------------------------- S3 away: the runner waits, the run says so

# A short upload window and quick retries, so the outage fits a test; every 1 s the operator reads the log.
STORAGE_BLIP_CONFIG = dict(
    RUNNER_UPLOAD_WINDOW_SECONDS="120",
    SUPERCHECK_PROGRESS_POLL_SECONDS="1",
    RUNNER_EXTRA_ENV=json.dumps({"SUPERCHECK_UPLOAD_BACKOFF_SECONDS": "0.5",
                                 "SUPERCHECK_UPLOAD_BACKOFF_MAX_SECONDS": "2"}),
)


def _uploading(custom_objects, namespace: str, name: str) -> dict:
    # The run is Uploading (reason Uploading) from the runner's first upload line; then the runner
    # says S3 is away (reason StorageUnavailable).
    def shown():
        run = get_run(custom_objects, namespace, name)
        return run if phase(run) == "Uploading" and run["status"].get("reason") == "StorageUnavailable" else None
    run = wait_for(shown, 90, 0.25, f"{name} Uploading, StorageUnavailable")
    status = run["status"]
    assert status["message"].startswith("attempt 1: S3 at http://127.0.0.1:"), status["message"]
    assert "connection refused" in status["message"] and "retrying until" in status["message"]
    return run


def _every_artifact_in_s3(custom_objects, s3_client, namespace: str, name: str) -> None:
    run = wait_for(lambda: (r := get_run(custom_objects, namespace, name)) and phase(r) in TERMINAL and r, 180,
                   what=f"{name} terminal")
    status = run["status"]
    assert (status["phase"], status["attempts"]) == ("Passed", 1), status
    assert "not uploaded" not in status["message"], status["message"]
    bucket, prefix = status["artifacts"]["bucket"], status["artifacts"]["prefix"]
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    names = {o["Key"][len(prefix) + 1:] for o in listed}
    assert {"console.log", "k6-summary.json", "k6-metrics.json.gz", "result.json"} <= names, names
    result = json.loads(s3_client.get_object(Bucket=bucket, Key=f"{prefix}/result.json")["Body"].read())
    assert result["notUploaded"] == [] and result["exitCode"] == 0


def test_s3_stopped_while_a_run_uploads_shows_uploading_and_loses_nothing(operator_ctl, services, namespace,
                                                                        core_v1, custom_objects, s3_client):
    operator_ctl.start(**STORAGE_BLIP_CONFIG)
    create(custom_objects, namespace, make_run("blip", SLEEPY_K6, env=[{"name": "SLEEP", "value": "6"}]))

    def k6_started():  # the runner's preflight found S3 and k6 runs
        try:
            return "running k6" in core_v1.read_namespaced_pod_log("blip-a1", namespace, container="runner")
        except Exception:  # noqa: BLE001 - the pod or its log is not there yet
            return False
    wait_for(k6_started, 90, 0.25, "k6 running in blip-a1")
    services.s3_stop()
    try:
        _uploading(custom_objects, namespace, "blip")
        time.sleep(5)
        assert phase(get_run(custom_objects, namespace, "blip")) == "Uploading"  # still waiting, still saying so
        wait_for(lambda: any(reason == "StorageUnavailable" for reason, _ in events_for(core_v1, namespace, "blip")),
                 30, what="a StorageUnavailable Event")
    finally:
        services.s3_start()  # the local S3 (SeaweedFS) comes back with its data; create_buckets is a no-op
    _every_artifact_in_s3(custom_objects, s3_client, namespace, "blip")


def test_s3_down_before_a_run_starts_the_test_runs_anyway_and_uploads_later(operator_ctl, services, namespace,
                                                                           custom_objects, s3_client):
    operator_ctl.start(**STORAGE_BLIP_CONFIG)
    services.s3_stop()
    try:
        create(custom_objects, namespace, make_run("early", SLEEPY_K6, env=[{"name": "SLEEP", "value": "1"}]))
        _uploading(custom_objects, namespace, "early")  # it ran: only a finished test uploads
    finally:
        services.s3_start()
    _every_artifact_in_s3(custom_objects, s3_client, namespace, "early")
