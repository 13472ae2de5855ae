"""Pure parts of surviving a storage blip: what an S3 error means, the backoff, the upload window's
end, and the progress line the operator reads back (each error is the one botocore raises, built
as botocore builds it; the real server's errors are in test_artifacts.py and test_storage_outage.py)."""

from __future__ import annotations

import io
import socket

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from urllib3.exceptions import NameResolutionError, NewConnectionError

from supercheck_contract import STORAGE_UNAVAILABLE, UPLOADING, Progress, last_progress
from supercheck_runner import process
from supercheck_runner.artifacts import Backoff
from supercheck_runner.storage import Kind, classify
from supercheck_runner.timer import OVERRUN_SECONDS, upload_give_up_at

AT = "http://s3.example:9000"


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


def connection_error(cause: Exception) -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url=AT + "/b/k", error=cause)


def kind_and_text(exc: BaseException) -> tuple[Kind, str]:
    problem = classify(exc, bucket="b", endpoint=AT)
    return problem.kind, problem.text


@pytest.mark.parametrize("status,code", [(500, "InternalError"), (503, "SlowDown"), (503, "503"),
                                         (429, "TooManyRequests"), (400, "RequestTimeout")])
def test_server_side_errors_are_an_outage(status, code):
    kind, text = kind_and_text(client_error(status, code))
    assert kind == Kind.OUTAGE and text.startswith(f"S3 at {AT} answered {status}")


def test_misconfigurations_say_what_to_fix():
    kind, text = kind_and_text(client_error(404, "NoSuchBucket"))
    assert kind == Kind.MISCONFIGURED and text.startswith(f"S3 at {AT} has no bucket 'b' (404 NoSuchBucket): create it")
    kind, text = kind_and_text(client_error(404, "404"))  # HEAD has no body: the code is the status
    assert kind == Kind.MISCONFIGURED and "has no bucket 'b' (404)" in text
    for code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        kind, text = kind_and_text(client_error(403, code))
        assert kind == Kind.MISCONFIGURED and f"denied access to bucket 'b' (403 {code})" in text
        assert "AWS_ACCESS_KEY_ID" in text
    kind, text = kind_and_text(client_error(301, "PermanentRedirect"))
    assert kind == Kind.MISCONFIGURED and "AWS_REGION" in text
    kind, text = kind_and_text(NoCredentialsError())
    assert kind == Kind.MISCONFIGURED and "credentials" in text


def test_the_network_to_s3_is_an_outage_with_its_cause():
    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert kind_and_text(connection_error(refused)) == (Kind.OUTAGE, f"S3 at {AT}: connection refused")
    assert kind_and_text(ConnectTimeoutError(endpoint_url=AT)) == (Kind.OUTAGE, f"S3 at {AT}: connect timed out")
    kind, text = kind_and_text(ReadTimeoutError(endpoint_url=AT))
    assert kind == Kind.OUTAGE and "read timed out" in text


def test_a_host_that_does_not_exist_is_a_misconfiguration_one_that_cannot_resolve_now_an_outage():
    def resolution(errno: int) -> EndpointConnectionError:
        error = NameResolutionError("s3.example", None, socket.gaierror(errno, "some resolver text"))
        error.__cause__ = socket.gaierror(errno, "some resolver text")
        return connection_error(error)

    kind, text = kind_and_text(resolution(socket.EAI_NONAME))
    assert kind == Kind.MISCONFIGURED and text.startswith("the S3 host 's3.example' does not resolve")
    assert "S3_ENDPOINT_URL" in text
    kind, text = kind_and_text(resolution(socket.EAI_AGAIN))
    assert kind == Kind.OUTAGE and "does not resolve right now" in text


def test_an_unreadable_file_is_local_not_an_outage():
    kind, text = kind_and_text(FileNotFoundError(2, "No such file or directory", "/out/x.png"))
    assert kind == Kind.LOCAL and "could not read the file" in text


def test_backoff_doubles_up_to_its_maximum():
    assert [Backoff(1.0, 15.0).delay(n) for n in range(7)] == [1, 2, 4, 8, 15, 15, 15]
    assert Backoff(0.2, 1.0).delay(100) == 1.0


def test_the_upload_window_counts_from_the_upload_and_never_past_timeout_plus_window():
    # the test ended early (runner started at 1000, timeout 120): the window is counted from the upload
    assert upload_give_up_at(upload_started=1030, runner_started=1000, timeout_seconds=120, window_seconds=300) == 1330
    # the test overran its stop: never later than timeout + window after the start
    assert upload_give_up_at(upload_started=1150, runner_started=1000, timeout_seconds=120, window_seconds=300) == 1420
    assert upload_give_up_at(upload_started=1030, runner_started=1000, timeout_seconds=120, window_seconds=0) == 1030
    # what RUNNER_DEADLINE_MARGIN_SECONDS (default 90) must cover beyond the window, with room to start the pod
    assert OVERRUN_SECONDS == 53


def test_progress_lines_round_trip_and_the_newest_wins():
    first = Progress(phase=UPLOADING, reason=STORAGE_UNAVAILABLE, message="S3 at http://x: connection refused")
    second = Progress(phase=UPLOADING, reason="StorageBack", message="S3 at http://x answers again\nfor real")
    tail = "\n".join(["k6 output", first.line(), "[supercheck] uploaded 3 files", second.line(), ""])
    assert second.line().endswith("answers again for real")  # one line, always
    assert last_progress(tail) == Progress(phase=UPLOADING, reason="StorageBack",
                                           message="S3 at http://x answers again for real")
    assert last_progress("\n".join(["x", first.line(), "y"])) == first
    assert last_progress("no progress here\n[supercheck] result: passed") is None
    assert len(Progress(phase=UPLOADING, reason="R", message="m" * 5000).line()) < 600


def test_a_test_cannot_speak_as_the_runner_on_stdout(monkeypatch):
    forged = Progress(phase=UPLOADING, reason=STORAGE_UNAVAILABLE, message="forged").line()
    sink = io.BytesIO()

    class Stdout:
        buffer = sink

    monkeypatch.setattr(process.sys, "stdout", Stdout())
    process._echo_stdout(forged.encode() + b"\n")
    process._echo_stdout(b"\r" + forged.encode() + b"\n")
    process._echo_stdout(b"an ordinary line\n")
    echoed = sink.getvalue().decode()
    assert echoed.startswith("[test] [supercheck] phase=Uploading")
    assert last_progress(echoed) is None  # neither the escaped line nor the one behind a carriage return
    assert echoed.endswith("an ordinary line\n")


def grant_error(status: int, code: str, operation: str = "PostObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "Policy expired."},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


@pytest.mark.parametrize("status,code,operation", [(403, "AccessDenied", "PostObject"),
                                                   (400, "EntityTooLarge", "PostObject"),
                                                   (403, "AccessDenied", "PresignedGetObject")])
def test_a_grant_s3_refuses_is_refused_not_an_outage_nor_a_credentials_problem(status, code, operation):
    kind, text = kind_and_text(grant_error(status, code, operation))
    assert kind == Kind.REFUSED
    assert text.startswith(f"S3 at {AT} refused the upload grant ({status} {code}: Policy expired.)")
    assert "upload grant the operator minted for this pod" in text and "AWS_ACCESS_KEY_ID" not in text


def test_a_grants_request_that_meets_an_outage_or_no_bucket_is_classed_as_any_other():
    assert kind_and_text(grant_error(503, "SlowDown"))[0] == Kind.OUTAGE
    assert kind_and_text(grant_error(404, "NoSuchBucket"))[0] == Kind.MISCONFIGURED
    assert kind_and_text(client_error(403, "AccessDenied"))[0] == Kind.MISCONFIGURED  # a key's request
