"""The run engine on in-memory ports: an error of Redis or PostgreSQL that quotes a password (as a
client library's may) reaches the run's status, its Events and the log without it. The real
adapters against real services: tests/security/test_engine_guards.py."""

from __future__ import annotations

import json
import logging

import pytest
from engine_kit import K6, run, world
from test_engine_jobrun import handle, job_spec, status, suite_cm

from supercheck import redact
from supercheck.engine import jobrun

PASSWORD = "hunter2-Secret"
REDIS_ERRORS = [
    f"Redis at redis://:{PASSWORD}@cache:6379/0 is unreachable",
    f"Redis at cache:6379/0?password={PASSWORD} is unreachable",
    f"AUTH failed for rediss://default:{PASSWORD}@cache:6380",
]
PG_ERRORS = [
    f"PostgreSQL at host=db password={PASSWORD} user=u dbname=sc is unavailable",
    f"PostgreSQL at host=db password='{PASSWORD} x' is unavailable",
    f"PostgreSQL at postgresql://u:{PASSWORD}@db/sc?sslpassword={PASSWORD} is unavailable",
]


@pytest.fixture
def operator_log(caplog):
    """The log as the operator writes it: its handlers carry the redacting filter (operator_main)."""
    caplog.set_level(logging.INFO)
    flt = redact.install([caplog.handler])
    yield caplog
    caplog.handler.removeFilter(flt)
    logging.getLogger(redact.KOPF_OBJECT_LOGGER).removeFilter(flt)


def nothing_says_it(w, body_status: dict, caplog) -> None:
    assert PASSWORD not in json.dumps(body_status)
    assert all(PASSWORD not in m for _, _, m in w.events.posted)
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("error", REDIS_ERRORS)
def test_a_redis_error_with_a_password_is_shown_without_it(error, operator_log):
    caplog = operator_log
    async def go():
        w = world()
        w.ledger.down, w.ledger.down_message = True, error
        w.kube.add_testrun("a", K6)
        assert await w.settle("a") == 2.0
        st = w.status("a")
        assert (st["phase"], st["reason"]) == ("Pending", "LedgerUnavailable") and "***" in st["message"]
        assert "LedgerUnavailable" in w.events.reasons()
        nothing_says_it(w, st, caplog)
        suite_cm(w)
        w.kube.add_jobrun("j", job_spec())
        assert await jobrun.step(handle(w, "j")) == 2.0
        assert status(w)["reason"] == "LedgerUnavailable"
        nothing_says_it(w, status(w), caplog)
    run(go)


@pytest.mark.parametrize("error", PG_ERRORS)
def test_a_postgresql_error_with_a_password_is_shown_without_it(error, operator_log):
    caplog = operator_log
    async def go():
        w = world(database_url="postgresql://fake")
        w.store.down, w.store.down_message = True, error
        w.kube.add_testrun("a", {**K6, "resources": {"cpu": "64"}})  # refused at once: its row is owed
        assert await w.settle("a") == 2.0
        st = w.status("a")
        recorded = next(c for c in st["conditions"] if c["type"] == "ResultsRecorded")
        assert recorded["reason"] == "DatabaseUnavailable" and "***" in recorded["message"]
        assert "DatabaseUnavailable" in w.events.reasons()
        nothing_says_it(w, st, caplog)
    run(go)
