"""Configuration: the specification's names and defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from supercheck.config import Settings, metric_label_name, normalise_memory

SPEC_VARS = ("RUNNING_CAPACITY", "QUEUED_CAPACITY", "MAX_CONCURRENT_EXECUTIONS", "TEST_EXECUTION_TIMEOUT_MS",
             "JOB_EXECUTION_TIMEOUT_MS", "PLAYWRIGHT_HEADLESS", "PLAYWRIGHT_RETRIES", "PLAYWRIGHT_TRACE",
             "WORKER_MEMORY_LIMIT", "CLEANUP_INTERVAL_MS")


@pytest.fixture
def clean_env(monkeypatch):
    for name in SPEC_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_are_the_specifications(clean_env):
    s = Settings()
    assert (s.running_capacity, s.queued_capacity, s.max_concurrent_executions) == (6, 50, 2)
    assert (s.test_execution_timeout_ms, s.job_execution_timeout_ms) == (120000, 900000)
    assert (s.playwright_headless, s.playwright_retries, s.playwright_trace) == (True, 1, "retain-on-failure")
    assert s.worker_memory_limit == "3GB" and s.default_memory == "3Gi"
    assert s.cleanup_interval_ms == 1800000
    assert s.metrics_port == 18080 and s.default_timeout_seconds == 120


def test_environment_overrides(clean_env):
    clean_env.setenv("RUNNING_CAPACITY", "3")
    clean_env.setenv("PLAYWRIGHT_HEADLESS", "false")
    clean_env.setenv("WORKER_MEMORY_LIMIT", "512MB")
    clean_env.setenv("SUPERCHECK_METRICS_LABEL_KEYS", "team, app.kubernetes.io/name")
    clean_env.setenv("RUNNER_EXTRA_ENV", '{"A": "1"}')
    s = Settings()
    assert s.running_capacity == 3 and s.playwright_headless is False and s.default_memory == "512Mi"
    assert s.metrics_label_names == ["label_team", "label_app_kubernetes_io_name"]
    assert s.runner_extra_env == {"A": "1"}


def test_nonsense_is_refused(clean_env):
    clean_env.setenv("RUNNING_CAPACITY", "0")
    with pytest.raises(ValidationError):
        Settings()
    clean_env.setenv("RUNNING_CAPACITY", "2")
    clean_env.setenv("PLAYWRIGHT_TRACE", "sometimes")
    with pytest.raises(ValidationError, match="PLAYWRIGHT_TRACE"):
        Settings()


def test_memory_forms():
    assert normalise_memory("3GB") == "3Gi" and normalise_memory("3Gi") == "3Gi"
    assert normalise_memory("150Mi") == "150Mi"
    with pytest.raises(ValueError):
        normalise_memory("lots")
    assert metric_label_name("team") == "label_team"


def test_fair_share_settings_default_to_no_limit_and_overrides_merge_with_the_defaults(clean_env):
    fair = Settings().fair_share
    assert fair.of("any") == fair.default and fair.default.running is None and fair.default.queued is None
    s = Settings(SUPERCHECK_NAMESPACE_MAX_RUNNING="2", SUPERCHECK_NAMESPACE_MAX_QUEUED="10",
                 SUPERCHECK_NAMESPACE_MAX_PRIORITY="100", SUPERCHECK_NAMESPACE_MAX_TIMEOUT_SECONDS="",
                 SUPERCHECK_NAMESPACE_LIMITS='{"team-a": {"running": 4, "queued": null}, "batch": {"maxPriority": -5}}')
    a, batch, other = s.fair_share.of("team-a"), s.fair_share.of("batch"), s.fair_share.of("other")
    assert (a.running, a.queued, a.max_priority) == (4, None, 100)  # left out: the default; null: no limit
    assert (batch.running, batch.queued, batch.max_priority) == (2, 10, -5)
    assert (other.running, other.queued, other.max_timeout_seconds) == (2, 10, None)
    assert s.fair_share.priority("team-a", 1000) == 100 and s.fair_share.priority("batch", 0) == -5
    assert s.fair_share.priority("other", 3) == 3


@pytest.mark.parametrize("value", ['{"team-a": {"runing": 4}}', '{"team-a": {"running": 0}}', '["team-a"]',
                                   '{"team-a": {"maxPriority": 5000}}'])
def test_fair_share_overrides_with_a_typo_or_out_of_range_are_refused_at_start(clean_env, value):
    with pytest.raises(ValidationError):
        Settings(SUPERCHECK_NAMESPACE_LIMITS=value)
