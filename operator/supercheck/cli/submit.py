"""From test files to the manifests of a run: pure, so every rule is tested without a cluster.

One file is a TestRun with the script inline. Several files, or a folder, are a JobRun whose tests
come from a ConfigMap of the files (``spec.testsFrom.configMapRef``): each key that is a test file
(``*.spec.ts``, ``*.test.js``; k6 also ``*.k6.js``) is one test, the others are helpers they import.
A ConfigMap's keys hold no ``/``, so a folder's own files are taken, not its subfolders'.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supercheck.models import KEY_PATTERN
from supercheck_contract import is_test_file

GROUP_VERSION = "supercheck.io/v1alpha1"
MAX_STEM = 40  # the run's name, with -<random> and the operator's suffixes (-script, -s1-a1), stays short
SKIPPED_NAMES = {"node_modules", "package-lock.json"}
# `import ... from 'k6'`, `from "k6/http"`, `require('k6')`: a k6 script.
K6_IMPORT = re.compile(r"""(from|require\s*\()\s*['"]k6(/[^'"]*)?['"]""")
PLAYWRIGHT_IMPORT = re.compile(r"""['"]@playwright/test['"]""")


class SubmitError(Exception):
    """The files cannot make a run; the message says why and what to do."""


@dataclass(frozen=True)
class TestFile:
    """One file as read from disk: its ConfigMap key and its content."""

    __test__ = False

    key: str
    text: str | None = None
    data: bytes | None = None  # not UTF-8: the ConfigMap's binaryData


@dataclass(frozen=True)
class Plan:
    """What ``supercheck run`` creates: a TestRun, or a JobRun and its files' ConfigMap."""

    kind: str  # TestRun or JobRun
    name: str
    run: dict[str, Any]
    config_map: dict[str, Any] | None = None
    tests: list[str] = field(default_factory=list)

    @property
    def plural(self) -> str:
        return "testruns" if self.kind == "TestRun" else "jobruns"


def suite_config_map_name(run_name: str) -> str:
    # Not <run>-script: that is the operator's own snapshot of the run's files.
    return f"{run_name}-suite"


def dns_label(text: str) -> str:
    """A file or folder name as the start of a Kubernetes name: lower case, digits and '-'."""
    text = text.lower()
    for suffix in (".spec", ".test", ".k6"):
        text = text.removesuffix(suffix)
    label = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:MAX_STEM].strip("-")
    return label or "run"


def stem_of(path: str) -> str:
    """``checkout.spec.ts`` → ``checkout``; a folder keeps its name."""
    name = Path(path.rstrip("/")).name
    return name.split(".", 1)[0] if "." in name[1:] else name


def run_name(stem: str, token: str | None = None) -> str:
    return f"{dns_label(stem)}-{token or secrets.token_hex(3)[:5]}"


def detect_type(files: Sequence[TestFile], asked: str | None) -> str:
    """playwright or k6: ``--type`` when given; a TypeScript file is Playwright; a .js file is k6 when
    it imports k6, Playwright when it imports @playwright/test; otherwise the user must say."""
    if asked:
        return asked
    kinds = set()
    for f in files:
        text = f.text or ""
        if K6_IMPORT.search(text):
            kinds.add("k6")
        elif PLAYWRIGHT_IMPORT.search(text) or re.search(r"\.[cm]?ts$", f.key):
            kinds.add("playwright")
    if len(kinds) == 1:
        return kinds.pop()
    if not kinds:
        raise SubmitError("cannot tell whether these are Playwright or k6 tests (no import of "
                          "'@playwright/test' or 'k6'): say --type playwright or --type k6")
    raise SubmitError("these files mix Playwright and k6 tests: run them separately, or say --type")


def parse_env(pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    env: dict[str, str] = {}
    for name, value in pairs:
        env[name] = value  # the last one wins, as in a shell
    return [{"name": k, "value": v} for k, v in env.items()]


def _spec_common(test_type: str, env: Sequence[tuple[str, str]], priority: int | None,
                 timeout: int | None, ttl: int | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": test_type}
    if priority is not None:
        spec["priority"] = priority
    if timeout is not None:
        spec["timeoutSeconds"] = timeout
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    if env:
        spec["env"] = parse_env(env)
    return spec


def testrun_plan(file: TestFile, test_type: str, name: str, namespace: str, *,
                 env: Sequence[tuple[str, str]] = (), priority: int | None = None,
                 timeout: int | None = None, ttl: int | None = None) -> Plan:
    if file.text is None:
        raise SubmitError(f"{file.key} is not a text file")
    spec = _spec_common(test_type, env, priority, timeout, ttl)
    spec["script"] = {"inline": file.text}
    run = {"apiVersion": GROUP_VERSION, "kind": "TestRun",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    return Plan("TestRun", name, run, tests=[file.key])


def jobrun_plan(files: Sequence[TestFile], test_type: str, name: str, namespace: str, *,
                env: Sequence[tuple[str, str]] = (), priority: int | None = None,
                timeout: int | None = None, parallelism: int | None = None, ttl: int | None = None) -> Plan:
    keys = [f.key for f in files]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise SubmitError(f"two files are named {', '.join(twice)}: a suite's files share one folder")
    bad = [k for k in keys if not re.match(KEY_PATTERN, k)]
    if bad:
        raise SubmitError(f"file names may hold only letters, digits and . _ -: {', '.join(bad)}")
    tests = sorted(k for k in keys if is_test_file(k, test_type))
    if not tests:
        named = "*.spec.ts, *.test.js or *.k6.js" if test_type == "k6" else "*.spec.ts or *.test.ts"
        raise SubmitError(f"no test file among {', '.join(sorted(keys))}: a suite's tests are named {named} "
                          "(the other files are helpers they import)")
    cm_name = suite_config_map_name(name)
    spec = _spec_common(test_type, env, priority, timeout, ttl)
    spec["testsFrom"] = {"configMapRef": {"name": cm_name}}
    if parallelism is not None:
        spec["parallelism"] = parallelism
    run = {"apiVersion": GROUP_VERSION, "kind": "JobRun",
           "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    config_map: dict[str, Any] = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": cm_name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/created-by": "supercheck-cli"}},
        "data": {f.key: f.text for f in files if f.text is not None},
    }
    binary = {f.key: f.data for f in files if f.text is None and f.data is not None}
    if binary:
        config_map["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}
    return Plan("JobRun", name, run, config_map, tests=tests)


def owned_by(config_map: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """The ConfigMap owned by the created run, so that deleting the run deletes its files too."""
    meta = run["metadata"]
    owner = {"apiVersion": GROUP_VERSION, "kind": run["kind"], "name": meta["name"], "uid": meta["uid"]}
    return {**config_map, "metadata": {**config_map["metadata"], "ownerReferences": [owner]}}


# ---------------------------------------------------------------- reading the files (the shell's part)

def read_file(path: Path) -> TestFile:
    raw = path.read_bytes()
    try:
        return TestFile(path.name, text=raw.decode("utf-8"))
    except UnicodeDecodeError:
        return TestFile(path.name, data=raw)


def collect(paths: Sequence[str]) -> tuple[list[TestFile], bool, str]:
    """The files named (a folder: its own files), whether they make a suite, and the run's stem."""
    files: list[TestFile] = []
    suite = len(paths) > 1
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            suite = True
            for child in sorted(path.iterdir()):
                if child.is_file() and not child.name.startswith(".") and child.name not in SKIPPED_NAMES:
                    files.append(read_file(child))
        elif path.is_file():
            files.append(read_file(path))
        else:
            raise SubmitError(f"{raw}: no such file or folder")
    if not files:
        raise SubmitError(f"no files in {', '.join(paths)}")
    stem = stem_of(paths[0]) if len(paths) == 1 else Path(paths[0]).resolve().parent.name or "suite"
    return files, suite, stem


def plan(paths: Sequence[str], namespace: str, *, test_type: str | None = None,
         env: Sequence[tuple[str, str]] = (), name: str | None = None, priority: int | None = None,
         timeout: int | None = None, parallelism: int | None = None, token: str | None = None,
         ttl: int | None = None) -> Plan:
    files, suite, stem = collect(paths)
    # A suite's type is its tests' (helpers may import anything); k6's test names include Playwright's.
    tests = [f for f in files if not suite or is_test_file(f.key, "k6")]
    chosen = detect_type(tests or files, test_type)
    run = name or run_name(stem, token)
    if not suite:
        if parallelism is not None:
            raise SubmitError("--parallelism is for several files or a folder (a JobRun)")
        return testrun_plan(files[0], chosen, run, namespace, env=env, priority=priority, timeout=timeout,
                            ttl=ttl)
    return jobrun_plan(files, chosen, run, namespace, env=env, priority=priority, timeout=timeout,
                       parallelism=parallelism, ttl=ttl)
