"""spec.script values, accepted and refused, with the words of the refusal. One table for two
judges: the models' own checks (tests/operator/test_script_files.py) and the API server's CEL
rules and patterns (tests/operator/test_cluster_script_schema.py)."""

from __future__ import annotations

from typing import Any

from supercheck.models import (
    MSG_DUPLICATE_KEY,
    MSG_DUPLICATE_PATH,
    MSG_FILES_LIST_THE_SCRIPT,
    MSG_K6_NEEDS_KEY,
    MSG_ONE_SOURCE,
    MSG_PATH,
    MSG_PATH_WITHOUT_KEY,
)

# (case, type, spec.script)
ACCEPTED: list[tuple[str, str, dict[str, Any]]] = [
    ("inline", "playwright", {"inline": "import { test } from '@playwright/test';"}),
    ("one key", "playwright", {"configMapRef": {"name": "suite", "key": "todo.spec.ts"}}),
    ("key with files and paths", "playwright", {"configMapRef": {
        "name": "suite", "key": "todo.spec.ts", "path": "tests/todo.spec.ts",
        "files": [{"key": "fixtures.ts", "path": "fixtures/index.ts"}, {"key": "data.json"}]}}),
    ("whole ConfigMap", "playwright", {"configMapRef": {"name": "suite"}}),
    ("whole ConfigMap with a placed file", "playwright", {"configMapRef": {
        "name": "suite", "files": [{"key": "fixtures.ts", "path": "fixtures/index.ts"}]}}),
    ("k6 with a module", "k6", {"configMapRef": {"name": "load", "key": "main.js",
                                                 "files": [{"key": "lib.js", "path": "lib/util.js"}]}}),
]

# (case, type, spec.script, the message's words)
REFUSED: list[tuple[str, str, dict[str, Any], str]] = [
    ("both sources", "playwright", {"inline": "x", "configMapRef": {"name": "suite", "key": "a.ts"}}, MSG_ONE_SOURCE),
    ("no source", "playwright", {}, MSG_ONE_SOURCE),
    ("path without key", "playwright", {"configMapRef": {"name": "suite", "path": "tests/a.spec.ts"}},
     MSG_PATH_WITHOUT_KEY),
    ("the script among its files", "playwright",
     {"configMapRef": {"name": "suite", "key": "a.ts", "files": [{"key": "a.ts", "path": "b.ts"}]}},
     MSG_FILES_LIST_THE_SCRIPT),
    ("one key twice", "playwright",
     {"configMapRef": {"name": "suite", "key": "a.ts", "files": [{"key": "b.ts"}, {"key": "b.ts", "path": "c.ts"}]}},
     MSG_DUPLICATE_KEY),
    ("two files on one path", "playwright",
     {"configMapRef": {"name": "suite", "key": "a.ts",
                       "files": [{"key": "b.ts", "path": "x/b.ts"}, {"key": "c.ts", "path": "x/b.ts"}]}},
     MSG_DUPLICATE_PATH),
    ("a file on the script's path", "playwright",
     {"configMapRef": {"name": "suite", "key": "a.ts", "path": "t/a.ts",
                       "files": [{"key": "b.ts", "path": "t/a.ts"}]}},
     MSG_DUPLICATE_PATH),
    ("k6 without key", "k6", {"configMapRef": {"name": "load"}}, MSG_K6_NEEDS_KEY),
    ("a path that climbs", "playwright",
     {"configMapRef": {"name": "suite", "key": "a.ts", "files": [{"key": "b.ts", "path": "../b.ts"}]}}, MSG_PATH),
    ("an absolute path", "playwright", {"configMapRef": {"name": "suite", "key": "a.ts", "path": "/etc/a.ts"}},
     MSG_PATH),
    ("a hidden file", "playwright", {"configMapRef": {"name": "suite", "key": "a.ts", "path": "x/.env"}}, MSG_PATH),
]


def manifest(name: str, test_type: str, script: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun", "metadata": {"name": name},
            "spec": {"type": test_type, "script": script}}
