"""The operator's configuration: environment variables, read once at start-up.

The names and defaults of the test-execution specification (RUNNING_CAPACITY, QUEUED_CAPACITY...) are kept;
everything the operator adds is prefixed ``SUPERCHECK_`` or ``RUNNER_``. `docs/operator.md`
lists them all.
"""

from __future__ import annotations

import ipaddress
import json
import re
from functools import cached_property
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from supercheck.fairshare import PRIORITY_MAX, PRIORITY_MIN, FairShare, NamespaceLimits
from supercheck.quantity import parse_quantity
from supercheck_contract import DEFAULT_MAX_ARTIFACT_BYTES, DEFAULT_MAX_ARTIFACT_FILES, DEFAULT_MAX_OBJECT_BYTES

# Name resolution for runner pods: the cluster DNS (kube-dns / CoreDNS keep this label).
DEFAULT_DNS_EGRESS: tuple[dict[str, Any], ...] = (
    {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    },
)
# The cloud instance-metadata service (AWS, GCP, Azure, OpenStack; AWS's IPv6 one): node credentials.
DEFAULT_EGRESS_EXCLUDED_CIDRS = ("169.254.169.254/32", "fd00:ec2::254/128")
# Addresses the operator's own monitor checks never connect to: link-local (the cloud metadata services
# at 169.254.169.254, their IPv6 and Alibaba's address), where a check could read credentials meant for the node.
DEFAULT_MONITOR_DENIED_CIDRS = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")


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
    runner_image_pull_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("RUNNER_IMAGE_PULL_SECRETS"),
        description="Secrets (comma-separated names) for pulling the runner image from a private registry; "
                    "each must exist in every namespace where runner pods run",
    )
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
    runner_max_artifact_bytes: int = Field(
        DEFAULT_MAX_ARTIFACT_BYTES, ge=0, validation_alias=_env("RUNNER_MAX_ARTIFACT_BYTES"),
        description="Bytes of artifacts one attempt may store (result.json aside); the most useful files first",
    )
    runner_max_artifact_files: int = Field(
        DEFAULT_MAX_ARTIFACT_FILES, ge=0, validation_alias=_env("RUNNER_MAX_ARTIFACT_FILES"),
        description="Files one attempt may store (result.json aside)",
    )
    runner_max_artifact_object_bytes: int = Field(
        DEFAULT_MAX_OBJECT_BYTES, ge=1, le=5 * 1024**3, validation_alias=_env("RUNNER_MAX_ARTIFACT_OBJECT_BYTES"),
        description="Largest single file a runner may store: its upload grant's content-length-range (at most "
                    "5 GiB, S3's limit for one POST)",
    )
    runner_runtime_class_name: str | None = Field(
        None, validation_alias=_env("RUNNER_RUNTIME_CLASS_NAME"),
        description="RuntimeClass of runner pods (gVisor, Kata: a sandbox between a script and the node's kernel)",
    )
    runner_network_policy: bool = Field(
        True, validation_alias=_env("RUNNER_NETWORK_POLICY"),
        description="Keep a default-deny egress NetworkPolicy for runner pods in every namespace they run in",
    )
    runner_egress: Annotated[list[dict[str, Any]], NoDecode] = Field(
        default_factory=list, validation_alias=_env("RUNNER_EGRESS"),
        description="JSON list of NetworkPolicyEgressRule: what runner pods may reach besides DNS "
                    "(the S3 endpoint, the systems under test)",
    )
    runner_dns_egress: Annotated[list[dict[str, Any]], NoDecode] = Field(
        default_factory=lambda: [dict(r) for r in DEFAULT_DNS_EGRESS], validation_alias=_env("RUNNER_DNS_EGRESS"),
        description="JSON list of NetworkPolicyEgressRule for name resolution (default: kube-dns in kube-system)",
    )
    runner_egress_excluded_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_EGRESS_EXCLUDED_CIDRS),
        validation_alias=_env("RUNNER_EGRESS_EXCLUDED_CIDRS"),
        description="CIDRs cut out of every ipBlock of the runner egress rules that contains them "
                    "(comma-separated; default: the cloud metadata addresses)",
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
    malloc_trim_seconds: float = Field(
        10.0, ge=0, validation_alias=_env("SUPERCHECK_MALLOC_TRIM_SECONDS"),
        description="How often freed C-heap memory is given back to the system (glibc malloc_trim); 0: never",
    )
    job_progress_poll_seconds: float = Field(
        3.0, gt=0, validation_alias=_env("SUPERCHECK_JOB_PROGRESS_POLL_SECONDS"),
        description="How often a JobRun's running shards' logs are read for the tests that ended",
    )
    peering: str = Field(
        "supercheck", validation_alias=_env("SUPERCHECK_PEERING"),
        description="Name of the ClusterKopfPeering object (namespaced: of the KopfPeering in each watched "
        "namespace), or 'standalone' to run without peering",
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

    # --- Monitors (supercheck.engine.monitors; docs/schedules-and-monitors.md) -----------
    monitor_concurrency: int = Field(
        100, ge=1, validation_alias=_env("SUPERCHECK_MONITOR_CONCURRENCY"),
        description="HTTP and TCP checks the operator makes at once (the others wait their turn: check lag)",
    )
    monitor_denied_cidrs: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_MONITOR_DENIED_CIDRS),
        validation_alias=_env("SUPERCHECK_MONITOR_DENIED_CIDRS"),
        description="Addresses HTTP and TCP monitor checks may not connect to (they go out from the operator, "
                    "not from a runner pod: no NetworkPolicy of the runners applies to them)",
    )
    monitor_priority: int = Field(
        100, ge=PRIORITY_MIN, le=PRIORITY_MAX, validation_alias=_env("SUPERCHECK_MONITOR_PRIORITY"),
        description="Priority of a synthetic check's TestRun when its Monitor sets none (above the TestRun "
                    "default 0: a check is due now, an ad-hoc run can wait)",
    )
    monitor_status_refresh_seconds: float = Field(
        60.0, gt=0, validation_alias=_env("SUPERCHECK_MONITOR_STATUS_REFRESH_SECONDS"),
        description="A Monitor's status is written when a reader would act on it (state, failure, recovery, "
                    "message) and otherwise at most this often (uptime, latency, counters)",
    )
    monitor_results_retention_days: float = Field(
        30.0, ge=0, validation_alias=_env("SUPERCHECK_MONITOR_RESULTS_RETENTION_DAYS"),
        description="monitor_results rows older than this are deleted (swept hourly); 0: kept forever",
    )

    # --- the API: live run streams (supercheck.api; docs/api.md) -----------------------
    api_port: int = Field(
        18082, ge=0, validation_alias=_env("SUPERCHECK_API_PORT"),
        description="Port of the API (Server-Sent Events of the runs); 0: no API",
    )
    api_heartbeat_seconds: float = Field(
        15.0, gt=0, validation_alias=_env("SUPERCHECK_API_HEARTBEAT_SECONDS"),
        description="A comment line on every quiet stream this often (proxies keep it open; dead clients found)",
    )
    api_auth_cache_seconds: float = Field(
        10.0, ge=0, validation_alias=_env("SUPERCHECK_API_AUTH_CACHE_SECONDS"),
        description="How long a TokenReview and a SubjectAccessReview answer is reused for the same token",
    )
    api_run_history: int = Field(
        64, ge=1, validation_alias=_env("SUPERCHECK_API_RUN_HISTORY"),
        description="Events kept per run for Last-Event-ID resume",
    )
    api_history: int = Field(
        10_000, ge=1, validation_alias=_env("SUPERCHECK_API_HISTORY"),
        description="Events kept for all runs (namespace streams' Last-Event-ID resume)",
    )
    api_max_streams: int = Field(
        5_000, ge=1, validation_alias=_env("SUPERCHECK_API_MAX_STREAMS"),
        description="Streams open at once; beyond: 429",
    )

    # --- fair share between namespaces (supercheck.fairshare); unset: no limit -----------
    namespace_max_running: int | None = Field(
        None, ge=1, validation_alias=_env("SUPERCHECK_NAMESPACE_MAX_RUNNING"),
        description="Running slots one namespace's runs hold at once (a JobRun holds its parallelism)",
    )
    namespace_max_queued: int | None = Field(
        None, ge=0, validation_alias=_env("SUPERCHECK_NAMESPACE_MAX_QUEUED"),
        description="Runs of one namespace waiting in the queue; beyond: Rejected",
    )
    namespace_max_priority: int | None = Field(
        None, ge=PRIORITY_MIN, le=PRIORITY_MAX, validation_alias=_env("SUPERCHECK_NAMESPACE_MAX_PRIORITY"),
        description="A higher spec.priority is lowered to this (with a Warning Event)",
    )
    namespace_max_timeout_seconds: int | None = Field(
        None, ge=1, validation_alias=_env("SUPERCHECK_NAMESPACE_MAX_TIMEOUT_SECONDS"),
        description="A longer spec.timeoutSeconds is refused",
    )
    namespace_limits: dict[str, NamespaceLimits] = Field(
        default_factory=dict, validation_alias=_env("SUPERCHECK_NAMESPACE_LIMITS"),
        description='JSON: per-namespace overrides, {"team-a": {"running": 4, "queued": 50, "maxPriority": 100, '
                    '"maxTimeoutSeconds": 3600}}; a key left out takes the default, null: no limit',
    )

    @field_validator("namespace_max_running", "namespace_max_queued", "namespace_max_priority",
                     "namespace_max_timeout_seconds", mode="before")
    @classmethod
    def _unset_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("namespace_limits", mode="before")
    @classmethod
    def _parse_namespace_limits(cls, value: object) -> object:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError('SUPERCHECK_NAMESPACE_LIMITS must be a JSON object: {"namespace": {"running": 4, ...}}')
        return value

    @field_validator("runner_extra_env", mode="before")
    @classmethod
    def _parse_extra_env(cls, value: object) -> object:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("RUNNER_EXTRA_ENV must be a JSON object of name -> value")
        return {str(k): str(v) for k, v in value.items()}

    @field_validator("runner_egress", "runner_dns_egress", mode="before")
    @classmethod
    def _parse_egress(cls, value: object) -> object:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else []
        if value is None:  # JSON null: no rules
            value = []
        if not isinstance(value, list) or not all(isinstance(rule, dict) for rule in value):
            raise ValueError("must be a JSON list of NetworkPolicyEgressRule objects ({to: [...], ports: [...]})")
        for rule in value:
            _check_keys(rule, {"to", "ports"}, "a NetworkPolicyEgressRule")
            for peer in rule.get("to") or []:
                _check_keys(peer, {"ipBlock", "namespaceSelector", "podSelector"}, "a NetworkPolicyPeer")
                block = peer.get("ipBlock")
                if block is not None:  # a bad CIDR would be refused by the API server at the first run
                    for cidr in [block.get("cidr", ""), *(block.get("except") or [])]:
                        ipaddress.ip_network(str(cidr), strict=False)
            for port in rule.get("ports") or []:
                _check_keys(port, {"protocol", "port", "endPort"}, "a NetworkPolicyPort")
        return value

    @field_validator("runner_egress_excluded_cidrs", "monitor_denied_cidrs", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ValueError("must be a comma-separated list of CIDRs")
        for cidr in value:
            ipaddress.ip_network(str(cidr), strict=False)  # raises on nonsense
        return value

    @field_validator("metrics_label_keys", "namespaces", "runner_image_pull_secrets", mode="before")
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
    def fair_share(self) -> FairShare:
        return FairShare.from_settings(self)

    @cached_property
    def metrics_label_names(self) -> list[str]:
        return [metric_label_name(k) for k in self.metrics_label_keys]


def _check_keys(obj: object, allowed: set[str], what: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{what} must be an object, not {obj!r}")
    unknown = set(obj) - allowed
    if unknown:
        raise ValueError(f"{what} has only {sorted(allowed)}, not {sorted(unknown)}")


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

