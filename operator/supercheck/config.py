"""The operator's configuration: environment variables, read once at start-up.

The names and defaults of the test-execution specification (RUNNING_CAPACITY, QUEUED_CAPACITY...) are kept;
everything the operator adds is prefixed ``SUPERCHECK_`` or ``RUNNER_``. `docs/operator.md`
lists them all.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from supercheck.quantity import parse_quantity


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    # --- the specification's variables -------------------------------------------------
    running_capacity: int = Field(6, ge=1, validation_alias=_env("RUNNING_CAPACITY"))
    queued_capacity: int = Field(50, ge=0, validation_alias=_env("QUEUED_CAPACITY"))
    max_concurrent_executions: int = Field(2, ge=1, validation_alias=_env("MAX_CONCURRENT_EXECUTIONS"))
    test_execution_timeout_ms: int = Field(120_000, ge=1000, validation_alias=_env("TEST_EXECUTION_TIMEOUT_MS"))
    job_execution_timeout_ms: int = Field(900_000, ge=1000, validation_alias=_env("JOB_EXECUTION_TIMEOUT_MS"))
    playwright_headless: bool = Field(True, validation_alias=_env("PLAYWRIGHT_HEADLESS"))
    playwright_retries: int = Field(1, ge=0, validation_alias=_env("PLAYWRIGHT_RETRIES"))
    playwright_trace: str = Field("retain-on-failure", validation_alias=_env("PLAYWRIGHT_TRACE"))
    worker_memory_limit: str = Field("3GB", validation_alias=_env("WORKER_MEMORY_LIMIT"))
    cleanup_interval_ms: int = Field(1_800_000, ge=1000, validation_alias=_env("CLEANUP_INTERVAL_MS"))

    # --- services ---------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL"))
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    s3_endpoint_url: str | None = Field(None, validation_alias=_env("S3_ENDPOINT_URL"))
    aws_access_key_id: str | None = Field(None, validation_alias=_env("AWS_ACCESS_KEY_ID"))
    aws_secret_access_key: str | None = Field(None, validation_alias=_env("AWS_SECRET_ACCESS_KEY"))
    aws_region: str = Field("us-east-1", validation_alias=_env("AWS_REGION", "AWS_DEFAULT_REGION"))

    # --- the runner pod ---------------------------------------------------------------
    runner_image: str = Field("supercheck-runner:dev", validation_alias=_env("RUNNER_IMAGE"))
    runner_image_pull_policy: str = Field("IfNotPresent", validation_alias=_env("RUNNER_IMAGE_PULL_POLICY"))
    runner_extra_env: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=_env("RUNNER_EXTRA_ENV"),
        description="JSON object of extra environment variables for every runner container",
    )
    runner_default_cpu: str = Field("2", validation_alias=_env("RUNNER_DEFAULT_CPU"))
    runner_default_ephemeral_storage: str = Field("10Gi", validation_alias=_env("RUNNER_DEFAULT_EPHEMERAL_STORAGE"))
    runner_max_cpu: str = Field("4", validation_alias=_env("RUNNER_MAX_CPU"))
    runner_max_memory: str = Field("8Gi", validation_alias=_env("RUNNER_MAX_MEMORY"))
    runner_max_ephemeral_storage: str = Field("20Gi", validation_alias=_env("RUNNER_MAX_EPHEMERAL_STORAGE"))
    runner_upload_window_seconds: int = Field(
        300, ge=0, validation_alias=_env("RUNNER_UPLOAD_WINDOW_SECONDS"),
        description="How long a runner keeps retrying its uploads while S3 is unavailable (RunnerConfig)",
    )
    runner_deadline_margin_seconds: int = Field(
        90, ge=0, validation_alias=_env("RUNNER_DEADLINE_MARGIN_SECONDS"),
        description="activeDeadlineSeconds = timeoutSeconds + RUNNER_UPLOAD_WINDOW_SECONDS + this: the pod's "
                    "start and the runner's last S3 requests (the runner's own timers end it first)",
    )
    runner_run_as_user: int = Field(1000, ge=1, validation_alias=_env("RUNNER_RUN_AS_USER"))
    runner_max_object_bytes: int = Field(
        512 * 1024 * 1024, ge=1, le=5 * 1024**3, validation_alias=_env("RUNNER_MAX_OBJECT_BYTES"),
        description="The largest single object a runner pod's upload grant lets it store (the POST policy's "
                    "content-length-range); at most 5 GiB, S3's limit for one POST",
    )

    # --- operator behaviour -----------------------------------------------------------
    metrics_port: int = Field(18080, ge=0, validation_alias=_env("SUPERCHECK_METRICS_PORT"))
    health_port: int = Field(18081, ge=0, validation_alias=_env("SUPERCHECK_HEALTH_PORT"))
    retry_backoff_base_seconds: float = Field(2.0, ge=0, validation_alias=_env("SUPERCHECK_RETRY_BACKOFF_SECONDS"))
    retry_backoff_max_seconds: float = Field(60.0, ge=0, validation_alias=_env("SUPERCHECK_RETRY_BACKOFF_MAX_SECONDS"))
    ledger_reconcile_seconds: float = Field(30.0, gt=0, validation_alias=_env("SUPERCHECK_LEDGER_RECONCILE_SECONDS"))
    script_ref_grace_seconds: float = Field(10.0, ge=0, validation_alias=_env("SUPERCHECK_SCRIPT_REF_GRACE_SECONDS"))
    service_retry_seconds: float = Field(2.0, gt=0, validation_alias=_env("SUPERCHECK_SERVICE_RETRY_SECONDS"))
    progress_poll_seconds: float = Field(
        10.0, ge=0, validation_alias=_env("SUPERCHECK_PROGRESS_POLL_SECONDS"),
        description="How often the tail of a running runner's log is read for its progress (Uploading); 0: never",
    )
    job_progress_poll_seconds: float = Field(
        3.0, gt=0, validation_alias=_env("SUPERCHECK_JOB_PROGRESS_POLL_SECONDS"),
        description="How often a JobRun's running shards' logs are read for the tests that ended",
    )
    peering: str = Field(
        "supercheck", validation_alias=_env("SUPERCHECK_PEERING"),
        description="Name of the ClusterKopfPeering object, or 'standalone' to run without peering",
    )
    peering_priority: int | None = Field(None, validation_alias=_env("SUPERCHECK_PEERING_PRIORITY"))
    peering_lifetime_seconds: int = Field(10, ge=2, validation_alias=_env("SUPERCHECK_PEERING_LIFETIME_SECONDS"))
    metrics_label_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("SUPERCHECK_METRICS_LABEL_KEYS"),
        description="TestRun label keys copied onto the run metrics (comma-separated)",
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("SUPERCHECK_NAMESPACES"),
        description="Namespaces to watch (comma-separated); empty: all namespaces",
    )

    @field_validator("runner_extra_env", mode="before")
    @classmethod
    def _parse_extra_env(cls, value: object) -> object:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("RUNNER_EXTRA_ENV must be a JSON object of name -> value")
        return {str(k): str(v) for k, v in value.items()}

    @field_validator("metrics_label_keys", "namespaces", mode="before")
    @classmethod
    def _parse_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("playwright_trace")
    @classmethod
    def _trace(cls, value: str) -> str:
        allowed = ("off", "on", "retain-on-failure", "on-first-retry")
        if value not in allowed:
            raise ValueError(f"PLAYWRIGHT_TRACE must be one of {', '.join(allowed)}")
        return value

    @field_validator("worker_memory_limit", "runner_default_cpu", "runner_default_ephemeral_storage",
                     "runner_max_cpu", "runner_max_memory", "runner_max_ephemeral_storage")
    @classmethod
    def _quantity(cls, value: str) -> str:
        normalise_memory(value)  # raises on nonsense
        return value

    # --- derived values -------------------------------------------------------------
    @property
    def default_timeout_seconds(self) -> int:
        return max(1, self.test_execution_timeout_ms // 1000)

    @property
    def default_memory(self) -> str:
        """WORKER_MEMORY_LIMIT as a Kubernetes quantity ("3GB" -> "3Gi")."""
        return normalise_memory(self.worker_memory_limit)

    @cached_property
    def metrics_label_names(self) -> list[str]:
        return [metric_label_name(k) for k in self.metrics_label_keys]


_HUMAN_UNITS = {"KB": "Ki", "MB": "Mi", "GB": "Gi", "TB": "Ti"}


def normalise_memory(value: str) -> str:
    """Accept the specification's "3GB" style as well as Kubernetes quantities.

    "3GB" is read as 3Gi: the specification means a worker's memory in the everyday
    (binary) sense, and Kubernetes users expect Gi.
    """
    text = value.strip()
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGT]B)", text, flags=re.IGNORECASE)
    if m:
        text = m.group(1) + _HUMAN_UNITS[m.group(2).upper()]
    parse_quantity(text)
    return text


def metric_label_name(key: str) -> str:
    """A TestRun label key as a Prometheus label name: `team.io/owner` -> `label_team_io_owner`."""
    return "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)

