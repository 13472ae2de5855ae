"""What a run's spec may not set, shared by the operator (the CRD's CEL rules, the models, the
check of an ``envFrom`` source's keys) and the runner (its own refusal of k6 flags).

Three rules, each said once here so the API server, the operator and the runner give the same
answer in the same words:

* **Reserved environment names.** Names the operator sets for the runner, or that the runner,
  Python, Node, Playwright, Chromium, k6, git, OpenSSL or the dynamic loader read to change what
  runs (which program, which code is loaded first, where outputs go, which credentials the
  runner's uploads use). A run's ``env`` may not set them, and an ``envFrom`` source may not bring
  them in. Everything else is the test's own business (``process.env`` / ``__ENV``).
* **The operator's own Secrets.** ``supercheck-runner-s3`` (the shared S3 key of older releases)
  and every name ending in ``-upload`` (a runner pod's upload grant, ``<pod-name>-upload``) are
  the operator's; no field of a spec may name them.
* **k6 flags the runner sets or keeps off.** Its outputs (``--out``, ``--summary-export``,
  ``--summary-trend-stats``, ``--no-summary``), k6's REST API and what needs it (``--address``,
  ``--profiling-enabled``, ``--linger``, ``--paused``) and files written outside the run's output
  folder (``--console-output``, ``--log-output``).

Each rule is also given as a regular expression in the syntax both Python's ``re`` and CEL's
``matches`` (RE2) understand, so the CRD's rules are generated from the same lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# ---------------------------------------------------------------- environment names

# Families: any name starting with one of these, with why it is reserved.
RESERVED_ENV_PREFIXES: dict[str, str] = {
    "SUPERCHECK_": "the runner's configuration and the operator's contract (allowed modules, tool paths, "
                   "the upload grant)",
    "LD_": "the dynamic loader: LD_PRELOAD, LD_LIBRARY_PATH and LD_AUDIT load code into every program",
    "NODE_": "Node's settings: NODE_OPTIONS (--require, --import) runs code before the test, NODE_PATH "
             "changes where modules are found",
    "PLAYWRIGHT_": "Playwright's settings: which browser runs and where the reports the runner reads go",
    "PW_": "Playwright's internal settings (reporters, source transforms)",
    "K6_": "k6's settings: outputs, summary export, web dashboard, config file, browser executable",
    "PYTHON": "the runner is Python: PYTHONPATH, PYTHONHOME and PYTHONSTARTUP load code into it",
    "AWS_": "the S3 client of the runner's uploads: endpoint, credentials, config files",
    "GIT_": "git's settings (the runner builds git's environment itself)",
    "OPENSSL_": "OpenSSL loads engines and providers (code) named by OPENSSL_CONF and OPENSSL_MODULES",
    "CHROME_": "Chromium's wrapper and launcher settings",
    "CHROMIUM_": "Chromium's wrapper settings: CHROMIUM_FLAGS adds switches such as --renderer-cmd-prefix, "
                 "which start other programs",
    "TINI_": "the init process that reaps the runner's children and forwards signals",
    "OTEL_": "OpenTelemetry: where the runner's spans go (set by the operator when it traces)",
}

# Single names, with why.
RESERVED_ENV_NAMES: dict[str, str] = {
    "HOME": "set by the operator: the runner's writable home",
    "PATH": "which node, k6, git and chromium run",
    "TMPDIR": "where the runner and its tools write temporary files",
    "S3_ENDPOINT_URL": "the S3 endpoint of the runner's uploads",
    "GCONV_PATH": "glibc loads character-set converters (code) from it",
    "GLIBC_TUNABLES": "changes glibc's behaviour in every program",
    "BASH_ENV": "a file every non-interactive bash runs first",
    "TRACEPARENT": "set by the operator: the run's trace, which the runner's spans join",
    "TRACESTATE": "the W3C trace context's companion of TRACEPARENT",
}

# Names in a reserved family that only change the test's own behaviour, so a run may set them.
ALLOWED_ENV_NAMES: frozenset[str] = frozenset({
    "NODE_ENV",  # the test's own convention
    "NODE_EXTRA_CA_CERTS",  # trust a private CA of the system under test (adds, never removes)
    "NODE_TLS_REJECT_UNAUTHORIZED",  # the test's own TLS checks
    "NODE_NO_WARNINGS",
    "K6_WEB_DASHBOARD_PERIOD",  # documented: the dashboard's aggregation period (docs/runner.md)
    "GIT_SSL_CAINFO",  # a git suite's server with a private CA (passed to git by the runner)
    "GIT_SSL_CAPATH",
})

# The pattern of a reserved name (exceptions aside): one regex for Python and for CEL's matches().
# (The names hold only letters, digits, _ and -: nothing to escape in either syntax.)
RESERVED_ENV_PATTERN = (
    "^(" + "|".join(RESERVED_ENV_PREFIXES) + ")"
    + "|^(" + "|".join(RESERVED_ENV_NAMES) + ")$"
)

MSG_RESERVED_ENV = (
    "names a variable the runner reserves: SUPERCHECK_*, LD_*, NODE_* (but NODE_ENV, NODE_EXTRA_CA_CERTS, "
    "NODE_TLS_REJECT_UNAUTHORIZED, NODE_NO_WARNINGS), PLAYWRIGHT_*, PW_*, K6_* (but K6_WEB_DASHBOARD_PERIOD), "
    "PYTHON*, AWS_*, GIT_* (but GIT_SSL_CAINFO, GIT_SSL_CAPATH), OPENSSL_*, CHROME_*, CHROMIUM_*, TINI_*, "
    "OTEL_*, HOME, PATH, TMPDIR, S3_ENDPOINT_URL, GCONV_PATH, GLIBC_TUNABLES, BASH_ENV, TRACEPARENT, TRACESTATE; "
    "give the variable another name (k6 options go in spec.k6.args)"
)
MSG_RESERVED_PREFIX = (
    "envFrom[].prefix would make names the runner reserves (a prefix that starts one of SUPERCHECK_, LD_, "
    "NODE_, PLAYWRIGHT_, PW_, K6_, PYTHON, AWS_, GIT_, OPENSSL_, CHROME_, CHROMIUM_, TINI_, OTEL_, HOME, PATH, "
    "TMPDIR, S3_ENDPOINT_URL, GCONV_PATH, GLIBC_TUNABLES, BASH_ENV, TRACEPARENT, TRACESTATE, or is one of them); "
    "use a prefix of your own such as APP_"
)


def reserved_env(name: str) -> str | None:
    """Why ``name`` is reserved, or None when a run may set it."""
    if name in ALLOWED_ENV_NAMES:
        return None
    if name in RESERVED_ENV_NAMES:
        return RESERVED_ENV_NAMES[name]
    for prefix, why in RESERVED_ENV_PREFIXES.items():
        if name.startswith(prefix):
            return why
    return None


def reserved_prefix(prefix: str) -> bool:
    """Whether ``envFrom[].prefix`` + some key could be a reserved name: the prefix starts inside a
    reserved family, or it is the beginning of a reserved family or name (``SUPER`` + ``CHECK_X``)."""
    if any(prefix.startswith(p) for p in RESERVED_ENV_PREFIXES):
        return True
    return any(r.startswith(prefix) for r in (*RESERVED_ENV_PREFIXES, *RESERVED_ENV_NAMES))


def reserved_keys(keys: Iterable[str], prefix: str = "") -> list[str]:
    """The keys of a ConfigMap or Secret that would become reserved names in a container's
    environment (with ``prefix``), sorted; only these may be named in a message."""
    return sorted(k for k in keys if reserved_env(prefix + k) is not None)


# ---------------------------------------------------------------- the operator's Secrets

OPERATOR_S3_SECRET = "supercheck-runner-s3"
UPLOAD_SECRET_SUFFIX = "-upload"
MSG_OPERATOR_SECRET = (
    f"names a Secret the operator owns ({OPERATOR_S3_SECRET}, or a name ending in {UPLOAD_SECRET_SUFFIX}: "
    "a runner pod's upload grant); refer to a Secret of your own"
)


def operator_secret(name: str) -> bool:
    """Whether a Secret of this name is the operator's (a spec may not refer to it)."""
    return name == OPERATOR_S3_SECRET or name.endswith(UPLOAD_SECRET_SUFFIX)


# ---------------------------------------------------------------- k6 flags

# Long flags the run may not pass (each also as --flag=value), and the shorthands among them.
REFUSED_K6_FLAGS = ("out", "summary-export", "summary-trend-stats", "no-summary", "address", "profiling-enabled",
                    "linger", "paused", "console-output", "log-output")
REFUSED_K6_SHORTHANDS = "aolp"  # --address, --out, --linger, --paused
# k6 run's boolean shorthands (-w --throw, -h --help, -q --quiet, -v --verbose): in a group such as
# -qa the letters after them are more flags; after any other shorthand the rest is its value (-u10).
K6_BOOLEAN_SHORTHANDS = "whqv"
K6_ARG_PATTERN = (
    "^--(" + "|".join(REFUSED_K6_FLAGS) + ")(=.*)?$"
    + f"|^-[{K6_BOOLEAN_SHORTHANDS}]*[{REFUSED_K6_SHORTHANDS}]"
)
MSG_K6_ARG = (
    "spec.k6.args may not set k6's outputs (--out/-o, --summary-export, --summary-trend-stats, --no-summary: the "
    "runner sets them), its REST API (--address/-a, --profiling-enabled, --linger/-l, --paused/-p: the runner "
    "keeps it off) or files outside the run's output folder (--console-output, --log-output); remove that argument"
)


def refused_k6_arg(args: Sequence[str]) -> str | None:
    """The first argument of ``k6Args`` that the runner refuses, or None."""
    for arg in args:
        if re.search(K6_ARG_PATTERN, arg):
            return arg
    return None


def refused_k6_args_message(args: Sequence[str]) -> str | None:
    """The refusal, naming the argument, or None when every argument may be passed."""
    arg = refused_k6_arg(args)
    return None if arg is None else f"{MSG_K6_ARG} (found {arg!r})"
