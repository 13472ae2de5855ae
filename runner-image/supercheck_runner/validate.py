"""Validation before executing: a script that cannot be right never starts a browser.

Playwright (TypeScript or JavaScript):
  * size limit;
  * it parses (TypeScript's parser, through ``runner-image/validate.mjs``);
  * it imports only modules on the allow-list (``SUPERCHECK_ALLOWED_MODULES``);
  * none of the constructs that get around the import check or write outside the work
    directory (eval, Function, process.binding, computed require()/import(), absolute paths).
k6:
  * size limit;
  * ``k6 inspect --execution-requirements`` accepts it: it parses, its init code runs, its
    options are valid, and every scenario's function exists (so a script without a default
    export, and no scenario naming another function, is refused).

The policy (:func:`playwright_issues`) is a pure function over the facts the node script
reports, so it is unit-tested without node. Every issue names its line.

What this is not: a sandbox. A determined script can reach further than a static check
sees; the isolation boundary is the pod (non-root user, only the work directory writable,
resource limits, no service account token). The check refuses mistakes and the obvious
ways out, with a message that says where and why.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supercheck_runner.outcome import strip_ansi

NODE_BUILTIN_PREFIX = "node:"

# Why a well-known module is refused: the hint makes the message speak.
REFUSAL_HINTS = {
    "child_process": "running programs from a test is not allowed",
    "worker_threads": "threads can run code that was not checked",
    "cluster": "forking processes from a test is not allowed",
    "net": "raw sockets are not allowed; use page.request or fetch",
    "dgram": "raw sockets are not allowed",
    "tls": "raw sockets are not allowed; use page.request or fetch",
    "http2": "raw sessions are not allowed; use page.request or fetch",
    "fs": "file access is not allowed",
    "vm": "running code that was not checked is not allowed",
    "module": "loading modules past the import check is not allowed",
    "process": "process internals are not allowed",
    "v8": "engine internals are not allowed",
    "inspector": "engine internals are not allowed",
}


# Playwright's own API for what scripts use `fs` for, by what the script calls.
FS_READS = frozenset({"readFileSync", "readFile", "createReadStream", "existsSync", "exists", "statSync", "stat",
                      "lstatSync", "lstat", "readdirSync", "readdir", "openSync", "open", "accessSync", "access"})
FS_WRITES = frozenset({"writeFileSync", "writeFile", "appendFileSync", "appendFile", "createWriteStream",
                       "mkdirSync", "mkdir", "copyFileSync", "copyFile", "renameSync", "rename", "rmSync", "rm",
                       "unlinkSync", "unlink", "mkdtempSync", "mkdtemp"})
FS_READ_HINT = ("read a download with `await download.createReadStream()` (all of it: "
                "`Buffer.concat(await (await download.createReadStream()).toArray())`), and upload a file from "
                "memory with `page.setInputFiles(selector, { name, mimeType, buffer })`")
FS_WRITE_HINT = ("keep data with the report with `await testInfo.attach(name, { body })`, and let Playwright write "
                 "files to `testInfo.outputPath(name)` (`page.screenshot({ path })`, `download.saveAs(path)`)")


@dataclass(frozen=True)
class Issue:
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"line {self.line}, column {self.column}: {self.message}"


class ValidationError(Exception):
    """The script is invalid; ``issues`` say where and why (first one first)."""

    def __init__(self, issues: Sequence[Issue]):
        self.issues = list(issues)
        super().__init__(format_issues(self.issues))


class ValidatorUnavailable(Exception):
    """The validator itself could not run (node or k6 missing, crashed): our problem, not the script's."""


def format_issues(issues: Sequence[Issue], limit: int = 5) -> str:
    text = "; ".join(str(i) for i in issues[:limit])
    if len(issues) > limit:
        text += f"; and {len(issues) - limit} more"
    return text


# --- pure policy ---------------------------------------------------------------------------


def size_issues(size_bytes: int, limit: int) -> list[Issue]:
    if size_bytes == 0:
        return [Issue(None, None, "the script is empty")]
    if size_bytes > limit:
        return [Issue(None, None, f"the script is {size_bytes} bytes, over the limit of {limit} bytes")]
    return []


def _module_key(specifier: str) -> str:
    """Compare builtins without their ``node:`` scheme: ``node:fs`` and ``fs`` are one module."""
    return specifier[len(NODE_BUILTIN_PREFIX):] if specifier.startswith(NODE_BUILTIN_PREFIX) else specifier


def _package_of(key: str) -> str:
    """``@scope/pkg/sub`` -> ``@scope/pkg``; ``pkg/sub`` -> ``pkg``."""
    parts = key.split("/")
    return "/".join(parts[:2]) if key.startswith("@") else parts[0]


def module_allowed(specifier: str, allowed: Iterable[str]) -> bool:
    """A module is allowed when it, or the package it is a subpath of, is on the list.
    Relative and absolute paths are never allowed: the run has exactly one file."""
    if specifier.startswith((".", "/")) or "://" in specifier and not specifier.startswith(NODE_BUILTIN_PREFIX):
        return False
    key = _module_key(specifier)
    allowed_keys = {_module_key(a) for a in allowed}
    return key in allowed_keys or _package_of(key) in allowed_keys


def fs_hint(uses: Sequence[Mapping[str, Any]]) -> str:
    """Why `fs` is refused, and the Playwright API that does what the script uses it for."""
    members = [u for u in uses if u.get("member")]
    reads = any(u["member"] in FS_READS for u in members)
    writes = any(u["member"] in FS_WRITES for u in members)
    hints = [h for h, wanted in ((FS_READ_HINT, reads), (FS_WRITE_HINT, writes)) if wanted] or [FS_READ_HINT,
                                                                                               FS_WRITE_HINT]
    seen = "".join(f"; line {u['line']} calls {u.get('expression') or u['member']}()" for u in members[:3])
    return f"{REFUSAL_HINTS['fs']}{seen}; instead, " + "; ".join(hints)


def refusal_hint(specifier: str, uses: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """Why a well-known module is refused (None for the rest)."""
    key = _module_key(specifier)
    if _package_of(key) == "fs":
        return fs_hint(uses)
    return REFUSAL_HINTS.get(key) or REFUSAL_HINTS.get(_package_of(key))


def playwright_issues(facts: Mapping[str, Any], allowed: Sequence[str]) -> list[Issue]:
    """Decide on what ``validate.mjs`` reported. Syntax errors first: nothing else is reliable then."""
    syntax = [Issue(e["line"], e["column"], f"syntax error: {e['message']}") for e in facts.get("syntaxErrors", [])]
    if syntax:
        return syntax
    issues: list[Issue] = []
    for imp in facts.get("imports", []):
        spec = imp["specifier"]
        if module_allowed(spec, allowed):
            continue
        if spec.startswith((".", "/")):
            why = "a test run has a single file, so local modules cannot be imported"
        else:
            why = refusal_hint(spec, imp.get("uses") or ()) or "it is not on the allow-list"
        issues.append(
            Issue(imp["line"], imp["column"],
                  f"import of '{spec}' is not allowed ({why}); allowed modules: {', '.join(allowed)}")
        )
    for f in facts.get("findings", []):
        issues.append(Issue(f["line"], f["column"], f["message"]))
    issues.sort(key=lambda i: (i.line or 0, i.column or 0))
    return issues


K6_LOCATION = re.compile(r"(?:Line |:)(\d+):(\d+)")


def k6_issue(output: str) -> Issue:
    """Turn k6's complaint into an issue, with the line when k6 gave one (``Line 3:11`` or ``(3:11)``)."""
    text = strip_ansi(output)
    messages = re.findall(r'msg="((?:[^"\\]|\\.)*)"', text)
    message = messages[-1] if messages else (text.strip().splitlines() or ["k6 inspect failed"])[-1]
    message = message.replace("\\n", " ").replace("\\t", " ").replace('\\"', '"').strip()
    message = re.sub(r"\s+", " ", message)
    if "function 'default' not found in exports" in message:
        message += " (add `export default function () { ... }`, or give every scenario an `exec` function)"
    m = K6_LOCATION.search(message)
    if m:
        return Issue(int(m.group(1)), int(m.group(2)), message)
    return Issue(None, None, message)


# --- the shell: running the validators ------------------------------------------------------


def read_script(path: Path, max_bytes: int) -> bytes:
    data = path.read_bytes()
    issues = size_issues(len(data), max_bytes)
    if issues:
        raise ValidationError(issues)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError([Issue(None, None, f"the script is not UTF-8 text (byte {exc.start})")]) from exc
    return data


def validate_playwright(script: Path, *, node: str, validator: Path, node_modules: Path,
                        allowed: Sequence[str], timeout: float) -> None:
    try:
        proc = subprocess.run(
            [node, str(validator), str(script)],
            capture_output=True, text=True, timeout=timeout,
            env={"NODE_PATH": str(node_modules), "PATH": "/usr/local/bin:/usr/bin:/bin"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValidatorUnavailable(f"the script validator could not run: {exc}") from exc
    if proc.returncode != 0:
        raise ValidatorUnavailable(f"the script validator failed: {proc.stderr.strip()[-500:]}")
    try:
        facts = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise ValidatorUnavailable(f"the script validator printed no JSON: {proc.stdout[:200]!r}") from exc
    issues = playwright_issues(facts, allowed)
    if issues:
        raise ValidationError(issues)


def validate_k6(script: Path, *, k6: str, env: Mapping[str, str], cwd: Path, timeout: float) -> None:
    try:
        proc = subprocess.run(
            [k6, "inspect", "--execution-requirements", str(script)],
            capture_output=True, text=True, timeout=timeout, env=dict(env), cwd=str(cwd),
        )
    except FileNotFoundError as exc:
        raise ValidatorUnavailable(f"k6 is not installed: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        # Init code that never ends is the script's fault: say so.
        raise ValidationError([Issue(None, None, f"k6 inspect did not finish within {timeout:.0f} s "
                                                 "(does the script's init code loop or wait?)")]) from exc
    if proc.returncode != 0:
        raise ValidationError([k6_issue(proc.stderr + proc.stdout)])
