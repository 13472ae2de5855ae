"""supercheck.redact: every form a password takes in a connection string or an error text is
replaced, and nothing else is (hosts, users, databases, test names stay readable)."""

from __future__ import annotations

import logging

import pytest

from supercheck import redact as r
from supercheck.redact import MASK, location, redact, redact_fields
from supercheck.rows import Row
from supercheck.store import job_tests_params, row_params

FORMS = [
    # URL user info
    ("redis://:pw123@h:6379/0", "redis://:***@h:6379/0"),
    ("rediss://default:pw123@cache.example.com:6380/1", "rediss://default:***@cache.example.com:6380/1"),
    ("postgresql://u:pw123@h/db", "postgresql://u:***@h/db"),
    ("postgres://u:p@ss@h:5432/db", "postgres://u:***@h:5432/db"),  # an unencoded '@' in the password
    ("unix://:pw123@/tmp/redis.sock", "unix://:***@/tmp/redis.sock"),
    # URL query
    ("redis://h:6379/0?password=pw123", "redis://h:6379/0?password=***"),
    ("postgresql://u@h/db?sslmode=verify-full&password=pw123", "postgresql://u@h/db?sslmode=verify-full&password=***"),
    ("postgresql://u@h/db?sslpassword=pw123&sslmode=require", "postgresql://u@h/db?sslpassword=***&sslmode=require"),
    ("rediss://h?username=u&password=pw%40123#x", "rediss://h?username=u&password=***#x"),
    # libpq keyword DSN
    ("host=h password=pw123 user=u", "host=h password=*** user=u"),
    ("host=h password = pw123 dbname=d", "host=h password = *** dbname=d"),
    ("host=h password='p w 1' user=u", "host=h password='***' user=u"),
    (r"host=h password='it\'s' user=u", "host=h password='***' user=u"),
    ("host=h sslpassword=pw123 sslkey=/k", "host=h sslpassword=*** sslkey=/k"),
    ("dbname=d PASSWORD=pw123", "dbname=d PASSWORD=***"),
    # environment assignments, JSON fields, Authorization values
    ("PGPASSWORD=pw123 psql -h h", "PGPASSWORD=*** psql -h h"),
    ("AWS_SECRET_ACCESS_KEY=abc/def+ghi", "AWS_SECRET_ACCESS_KEY=***"),
    ('{"password": "pw123", "user": "u"}', '{"password": "***", "user": "u"}'),
    ("{'redis_password': 'pw123'}", "{'redis_password': '***'}"),
    ("Authorization: Bearer abcdefghij123", "Authorization: Bearer ***"),
    ("GET /x?X-Amz-Signature=abc123&X-Amz-Date=1", "GET /x?X-Amz-Signature=***&X-Amz-Date=1"),
]


@pytest.mark.parametrize("text, expected", FORMS)
def test_every_form_of_a_password_is_redacted(text, expected):
    assert redact(text) == expected
    assert "pw123" not in redact(f"Redis at {text} is unreachable: refused")


@pytest.mark.parametrize("text", [
    "ConfigMap 'suite' referenced by spec.script.configMapRef has no key 'password.spec.ts'",
    "redis://h:6379/0 is unreachable: Error 111 connecting to h:6379. Connection refused.",
    "postgresql://u@h/db: FATAL: password authentication failed for user \"u\"",
    "test login password reset > shows the form (2 failed)",
    "expected token '}' at 3:14",
])
def test_text_without_a_secret_is_left_as_it_is(text):
    assert redact(text) == text


def test_the_operators_own_secrets_are_redacted_in_any_form_they_appear():
    try:
        r.remember_connections(["redis://:S3cret-Redis@h:6379/0", "host=h password='Pg pass' dbname=d"])
        r.remember("AKIA-SECRET-KEY-VALUE", "ab")  # too short to replace by value
        text = ("auth failed with S3cret-Redis; encoded S3cret%2DRedis? no: Pg%20pass and 'Pg pass'; "
                "key AKIA-SECRET-KEY-VALUE; the word ab stays")
        clean = redact(text)
        assert "S3cret-Redis" not in clean and "Pg pass" not in clean and "Pg%20pass" not in clean
        assert "AKIA-SECRET-KEY-VALUE" not in clean and "the word ab stays" in clean
    finally:
        r.forget_all()


def test_connection_secrets_are_the_passwords_of_every_form():
    assert r.connection_secrets("redis://:a1@h/0?password=b2") == ["a1", "b2"]
    assert r.connection_secrets(r"host=h password='p \' q' user=u") == ["p ' q"]
    assert r.connection_secrets("postgresql://u@h/db") == [] and r.connection_secrets(None) == []


@pytest.mark.parametrize("dsn, where", [
    ("redis://:pw@cache:6379/0?password=pw", "cache:6379/0"),
    ("postgresql://u:pw@db.example.com:5432/supercheck?sslpassword=x", "db.example.com:5432/supercheck"),
    ("host=db port=5433 dbname=sc user=u password='p w'", "db:5433/sc"),
    ("dbname=sc password=pw", "localhost/sc"),
    ("redis://[::1]:6379/0", "[::1]:6379/0"),
])
def test_a_location_names_the_service_and_nothing_secret(dsn, where):
    assert location(dsn) == where


def test_status_fields_redacted_are_messages_and_failures_only():
    patch = {"message": "Redis at redis://:pw@h is down", "reason": "LedgerUnavailable",
             "conditions": [{"type": "Admitted", "message": "host=h password=pw"}],
             "tests": [{"name": "password=reset.spec.ts", "failure": "GET https://u:pw@site/ failed"}],
             "attemptHistory": [{"podName": "a-a1", "message": "?password=pw"}]}
    clean = redact_fields(patch)
    assert "pw" not in str({k: v for k, v in clean.items() if k != "tests"}).replace("podName", "")
    assert clean["tests"][0]["name"] == "password=reset.spec.ts"  # a name is an identifier: kept
    assert clean["tests"][0]["failure"] == "GET https://u:***@site/ failed"
    assert clean["reason"] == "LedgerUnavailable" and patch["message"].endswith("@h is down")  # a copy


def test_rows_for_postgresql_carry_no_password():
    row = Row(namespace="ns", name="r", uid="u", attempt=1, type="k6", phase="Error", final=True,
              message="PostgreSQL at host=h password=pw123 is unavailable")
    assert "pw123" not in row_params(row)["message"]
    from supercheck.jobrows import JobRow, JobTestRow
    job = JobRow(uid="u", namespace="ns", name="j", type="k6", phase="Error", final=True)
    tests = job_tests_params(job, [JobTestRow(name="t", outcome="failed", failure="redis://:pw123@h refused")])
    assert "pw123" not in tests["tests"]


def test_the_logging_filter_redacts_message_arguments_and_tracebacks():
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("supercheck.test-redact")
    log.addHandler(handler)
    log.propagate = False
    flt = r.install([handler])
    try:
        log.warning("cannot reach %s", "redis://:pw123@h:6379/0")
        try:
            raise ConnectionError("connect failed: host=h password=pw123")
        except ConnectionError:
            log.exception("ledger reconcile failed")
        assert len(records) == 2 and all("pw123" not in line for line in records)
        assert "redis://:***@h:6379/0" in records[0] and "password=***" in records[1]
        # Kopf's per-object logger: its own handler (K8sPoster) posts each warning as an Event, so the
        # filter sits on the logger, before any handler.
        kopf_objects = logging.getLogger(r.KOPF_OBJECT_LOGGER)
        poster = Keep()
        poster.setFormatter(logging.Formatter("%(message)s"))
        kopf_objects.addHandler(poster)
        try:
            kopf_objects.warning("Handler 'cancelled' failed temporarily: PostgreSQL at %s is unavailable",
                                 "host=db password='pw123 x'")
        finally:
            kopf_objects.removeHandler(poster)
        assert records[-1] == ("Handler 'cancelled' failed temporarily: PostgreSQL at host=db password='***' "
                               "is unavailable")
    finally:
        log.removeHandler(handler)
        logging.getLogger(r.KOPF_OBJECT_LOGGER).removeFilter(flt)
    assert MASK == "***"


@pytest.mark.parametrize("text", ["_" * 200_000, "a." * 100_000, "x://u:" + "p" * 200_000, '"password":' * 20_000,
                                  "password='" * 20_000])
def test_redacting_a_long_text_takes_time_in_proportion_to_it(text):
    """A log line may hold a whole spec (Kopf's debug log of a 1,000,000-character script): a pattern
    that tried every position of a long run of name characters would take minutes (it did: 44 s for
    20,000 underscores) and stall the operator's logging."""
    import time

    started = time.monotonic()
    redact(text)
    assert time.monotonic() - started < 2.0
