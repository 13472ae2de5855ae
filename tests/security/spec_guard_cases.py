"""Specs the CRD must refuse before any pod is tried, and their neighbours it must accept, with the
words of each refusal. One table for three judges: the models (tests/operator/test_spec_guards.py),
the generated schema's rules (the same file) and the real API server
(tests/security/test_spec_guards.py). Each fragment is merged into a k6 TestRun's or JobRun's spec."""

from __future__ import annotations

import copy
from typing import Any

from supercheck.models import (
    MSG_ENV_FROM_ONE_SOURCE,
    MSG_ENV_NAME,
    MSG_ENV_ONE_SOURCE,
    MSG_ENV_PREFIX,
    MSG_ENV_VALUE_AND_FROM,
    MSG_OBJECT_KEY,
    MSG_OBJECT_NAME,
)
from supercheck_contract.reserved import MSG_K6_ARG, MSG_OPERATOR_SECRET, MSG_RESERVED_ENV, MSG_RESERVED_PREFIX

K6_SCRIPT = "export const options = { vus: 1, iterations: 1 };\nexport default function () {}\n"


def env(name: str, value: str = "x") -> dict[str, Any]:
    return {"env": [{"name": name, "value": value}]}


def secret_env(name: str, key: str = "k") -> dict[str, Any]:
    return {"env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}]}


# (case, spec fragment, the words of the refusal). The issue's attacks come first.
REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("the allow-list widened", env("SUPERCHECK_ALLOWED_MODULES", "child_process"), MSG_RESERVED_ENV),
    ("code before the test", env("NODE_OPTIONS", "--import=data:text/javascript,console.log(1)"), MSG_RESERVED_ENV),
    ("node's module path", env("NODE_PATH", "/tmp"), MSG_RESERVED_ENV),
    ("a preloaded library", env("LD_PRELOAD", "/tmp/x.so"), MSG_RESERVED_ENV),
    ("python's path", env("PYTHONPATH", "/tmp"), MSG_RESERVED_ENV),
    ("the runner's S3 endpoint", env("S3_ENDPOINT_URL", "http://evil:9000"), MSG_RESERVED_ENV),
    ("the runner's S3 credentials", env("AWS_SECRET_ACCESS_KEY"), MSG_RESERVED_ENV),
    ("which programs run", env("PATH", "/tmp"), MSG_RESERVED_ENV),
    ("the home the operator sets", env("HOME", "/"), MSG_RESERVED_ENV),
    ("the browser playwright starts", env("PLAYWRIGHT_BROWSERS_PATH", "/tmp"), MSG_RESERVED_ENV),
    ("chromium's wrapper flags", env("CHROMIUM_FLAGS", "--renderer-cmd-prefix=/bin/sh"), MSG_RESERVED_ENV),
    ("k6's outputs", env("K6_OUT", "csv=/tmp/x.csv"), MSG_RESERVED_ENV),
    ("k6's dashboard port", env("K6_WEB_DASHBOARD_PORT", "5665"), MSG_RESERVED_ENV),
    ("openssl's engines", env("OPENSSL_CONF", "/tmp/x.cnf"), MSG_RESERVED_ENV),
    ("the shared S3 key by name", secret_env("supercheck-runner-s3", "AWS_SECRET_ACCESS_KEY"), MSG_OPERATOR_SECRET),
    ("another pod's upload grant", secret_env("other-run-a1-upload", "grant.json"), MSG_OPERATOR_SECRET),
    ("the shared S3 Secret whole", {"envFrom": [{"secretRef": {"name": "supercheck-runner-s3"}}]},
     MSG_OPERATOR_SECRET),
    ("an upload grant whole", {"envFrom": [{"prefix": "G_", "secretRef": {"name": "x-a1-upload"}}]},
     MSG_OPERATOR_SECRET),
    ("a webhook URL from the shared S3 Secret",
     {"notify": [{"urlFrom": {"secretKeyRef": {"name": "supercheck-runner-s3", "key": "AWS_ACCESS_KEY_ID"}}}]},
     MSG_OPERATOR_SECRET),
    ("a reserved family as prefix", {"envFrom": [{"prefix": "NODE_", "configMapRef": {"name": "c"}}]},
     MSG_RESERVED_PREFIX),
    ("a prefix inside a reserved family", {"envFrom": [{"prefix": "SUPERCHECK_X_", "configMapRef": {"name": "c"}}]},
     MSG_RESERVED_PREFIX),
    ("a prefix that begins a reserved name", {"envFrom": [{"prefix": "SUPER", "configMapRef": {"name": "c"}}]},
     MSG_RESERVED_PREFIX),
    # Pod validation's own refusals, said up front (they used to leave the run Pending, holding a slot)
    ("envFrom without a source", {"envFrom": [{"prefix": "X_"}]}, MSG_ENV_FROM_ONE_SOURCE),
    ("envFrom with two sources",
     {"envFrom": [{"prefix": "X_", "configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]},
     MSG_ENV_FROM_ONE_SOURCE),
    ("a prefix with '='", {"envFrom": [{"prefix": "X=", "configMapRef": {"name": "c"}}]}, MSG_ENV_PREFIX),
    ("value and valueFrom",
     {"env": [{"name": "A", "value": "x", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]},
     MSG_ENV_VALUE_AND_FROM),
    ("valueFrom without a source", {"env": [{"name": "A", "valueFrom": {}}]}, MSG_ENV_ONE_SOURCE),
    ("valueFrom with two sources",
     {"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"},
                                          "secretKeyRef": {"name": "s", "key": "k"}}}]},
     MSG_ENV_ONE_SOURCE),
    ("a name starting with a digit", env("1A"), MSG_ENV_NAME),
    ("a name with '='", env("A=B"), MSG_ENV_NAME),
    ("a Secret name in capitals", secret_env("My-Secret"), MSG_OBJECT_NAME),
    ("a ConfigMap name with '_'", {"envFrom": [{"configMapRef": {"name": "my_env"}}]}, MSG_OBJECT_NAME),
    ("a key starting with '..'", secret_env("creds", "..token"), MSG_OBJECT_KEY),
    ("a key with '/'", {"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "a/b"}}}]},
     MSG_OBJECT_KEY),
    # k6 flags the runner sets, or that open k6's REST API or write outside the output folder
    ("k6's REST API", {"k6": {"args": ["--address", "0.0.0.0:6565"]}}, MSG_K6_ARG),
    ("k6's REST API, written as one", {"k6": {"args": ["--address=0.0.0.0:6565"]}}, MSG_K6_ARG),
    ("k6's REST API, short", {"k6": {"args": ["-a", "0.0.0.0:6565"]}}, MSG_K6_ARG),
    ("k6's REST API, in a group of flags", {"k6": {"args": ["-qa0.0.0.0:6565"]}}, MSG_K6_ARG),
    ("another output", {"k6": {"args": ["--out", "csv=/tmp/all.csv"]}}, MSG_K6_ARG),
    ("another output, short", {"k6": {"args": ["-ojson=/tmp/x.json"]}}, MSG_K6_ARG),
    ("the summary export moved", {"k6": {"args": ["--summary-export=/tmp/s.json"]}}, MSG_K6_ARG),
    ("the summary's stats changed", {"k6": {"args": ["--summary-trend-stats", "avg"]}}, MSG_K6_ARG),
    ("no summary at all", {"k6": {"args": ["--no-summary"]}}, MSG_K6_ARG),
    ("k6 kept alive", {"k6": {"args": ["--linger"]}}, MSG_K6_ARG),
    ("k6 paused", {"k6": {"args": ["-p"]}}, MSG_K6_ARG),
    ("profiling endpoints", {"k6": {"args": ["--profiling-enabled"]}}, MSG_K6_ARG),
    ("the console to a file", {"k6": {"args": ["--console-output", "/tmp/c.log"]}}, MSG_K6_ARG),
    ("k6's log to a file", {"k6": {"args": ["--log-output=file=/tmp/k6.log"]}}, MSG_K6_ARG),
]

# (case, spec fragment): close to a refusal, but fine.
ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("a variable of the test", env("BASE_URL", "http://shop.test")),
    ("ENV, as teams name their stage", env("ENV", "staging")),
    ("a private CA for the system under test", env("NODE_EXTRA_CA_CERTS", "/etc/ssl/ca.pem")),
    ("NODE_ENV", env("NODE_ENV", "test")),
    ("the dashboard's period (documented)", env("K6_WEB_DASHBOARD_PERIOD", "1s")),
    ("a proxy for the system under test", env("HTTPS_PROXY", "http://proxy:3128")),
    ("a token from a Secret of one's own", secret_env("shop-creds", "api.token")),
    ("a key starting with one dot", secret_env("shop-creds", ".token")),
    ("a whole ConfigMap with a prefix", {"envFrom": [{"prefix": "APP_", "configMapRef": {"name": "shop-env"}}]}),
    ("a whole Secret without a prefix", {"envFrom": [{"secretRef": {"name": "shop-creds"}}]}),
    ("a Secret whose name mentions upload", secret_env("upload-creds")),
    ("load options", {"k6": {"args": ["--vus", "2", "-d30s", "-u2", "--iterations=3", "-eAPP=1", "--tag", "a=b",
                                      "--no-thresholds", "-q", "--http-debug=full"]}}),
    ("an env for the script (not k6's)", {"k6": {"args": ["-e", "K6_OUT=x"]}}),
]


def make_testrun(name: str, fragment: dict[str, Any]) -> dict[str, Any]:
    spec = {"type": "k6", "script": {"inline": K6_SCRIPT}, **copy.deepcopy(fragment)}
    return {"apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun", "metadata": {"name": name}, "spec": spec}


def make_jobrun(name: str, fragment: dict[str, Any]) -> dict[str, Any]:
    spec = without_none({"type": "k6", "tests": [{"name": "smoke", "script": {"inline": K6_SCRIPT}}],
                         **copy.deepcopy(fragment)})
    return {"apiVersion": "supercheck.io/v1alpha1", "kind": "JobRun", "metadata": {"name": name}, "spec": spec}


# JobRun only: a git suite's credentials naming the operator's Secrets.
JOBRUN_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("git credentials from the shared S3 Secret",
     {"tests": None, "testsFrom": {"git": {"url": "https://git.test/suite.git",
                                           "credentials": {"secretRef": {"name": "supercheck-runner-s3"}}}}},
     MSG_OPERATOR_SECRET),
    ("git credentials from an upload grant",
     {"tests": None, "testsFrom": {"git": {"url": "https://git.test/suite.git",
                                           "credentials": {"secretRef": {"name": "j-s1-a1-upload"}}}}},
     MSG_OPERATOR_SECRET),
]


def without_none(spec: dict[str, Any]) -> dict[str, Any]:
    """``tests: None`` in a fragment removes the base's tests (a JobRun has tests or testsFrom)."""
    return {k: v for k, v in spec.items() if v is not None}
