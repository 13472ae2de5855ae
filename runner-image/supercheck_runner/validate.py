"""Validation before executing: a script that cannot be right never starts a browser.

Both: the script and the files beside it (:mod:`supercheck_runner.project`) are within the size
limit together, code is UTF-8 text, and no file brings its own ``node_modules``.

Both: no file nests brackets deeper than the parser follows (``tooDeep``: a validation error with
its line, not a crash of the validator that would be classed infrastructure and retried).

Playwright (TypeScript or JavaScript), every code file of the suite:
  * it parses (TypeScript's parser, through ``runner-image/validate.mjs``);
  * it imports only modules on the allow-list (``SUPERCHECK_ALLOWED_MODULES``; never Playwright's
    command line), and files of the suite by relative paths that stay in its folder and name a
    file that is there;
  * none of the constructs that get around the import check or write outside the work
    directory: the guarded globals (eval, Function, Reflect, require, module, process,
    globalThis) used only in the shapes a test needs, never passed on or reached by a computed
    name; no ``.constructor`` (Function's way back in), no changed prototypes, no top-level
    ``arguments``, no ``with``; no browser launch option that starts another program
    (executablePath, ignoreDefaultArgs, command-prefix switches, env) or drives a browser outside
    the pod (connect, connectOverCDP, launchServer, _electron); no absolute paths.
k6:
  * the files its ``handleSummary`` returns stay in the work directory (no absolute path, no
    ``..``): only what k6 writes there is uploaded (facts from ``validate.mjs``);
  * the files it reads (``open()``, k6/experimental/fs, gRPC ``load()``) and imports are the
    suite's: no absolute path, no ``..`` out of the suite, and ``open()`` names its file literally
    (else k6 reads any file the pod's user can, during ``k6 inspect`` itself);
  * ``k6 inspect --execution-requirements`` accepts it: it parses, its init code runs, its
    options are valid, and every scenario's function exists (so a script without a default
    export, and no scenario naming another function, is refused). A remote module that cannot
    be fetched (DNS, refused, timed out) is the network's fault, not the script's:
    :class:`NetworkUnavailable`, which the operator retries.

The policy (:func:`playwright_issues`) is a pure function over the facts the node script
reports, so it is unit-tested without node. Every issue names its line.

What this is not: a sandbox. A determined script can reach further than a static check
sees (a member's name computed on an ordinary object, ``x[k]``, is out of its reach); the
isolation boundary is the pod (docs/security.md: no shared credentials, a per-pod S3 grant,
a NetworkPolicy, an optional RuntimeClass, resource limits, a non-root user). The check
refuses mistakes and the easy ways out, with a message that says where, why, and what to do.
"""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from supercheck_runner import k6_output
from supercheck_runner.project import CODE_SUFFIXES, Project, list_files, resolve_import

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
    file: str | None = None  # a file of the suite other than the script itself

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        if self.line is None:
            return where + self.message
        return f"{where}line {self.line}, column {self.column}: {self.message}"


class ValidationError(Exception):
    """The script is invalid; ``issues`` say where and why (first one first)."""

    def __init__(self, issues: Sequence[Issue]):
        self.issues = list(issues)
        super().__init__(format_issues(self.issues))


class ValidatorUnavailable(Exception):
    """The validator itself could not run (node or k6 missing, crashed): our problem, not the script's."""


class NetworkUnavailable(Exception):
    """Something the script needs could not be reached (a remote module: DNS, refused, timed out).
    The message says what, and how to do without it."""


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


def project_issues(sizes: Mapping[str, int], entry: str | None, limit: int) -> list[Issue]:
    """The suite as a whole: the script is there and not empty, all files together within the limit,
    no ``node_modules`` of its own (it would shadow the runner's @playwright/test)."""
    if entry is not None and entry not in sizes:
        return [Issue(None, None, f"the script {entry!r} is not in its folder (it has: {', '.join(sizes)})")]
    if not sizes:
        return [Issue(None, None, "the suite's folder is empty")]
    if entry is not None and len(sizes) == 1:
        return size_issues(sizes[entry], limit)
    issues = size_issues(sizes[entry], limit) if entry is not None and sizes[entry] == 0 else []
    total = sum(sizes.values())
    if total > limit:
        issues.append(Issue(None, None, f"the script and its files are {total} bytes ({len(sizes)} files), "
                                        f"over the limit of {limit} bytes"))
    shadows = [p for p in sizes if "node_modules" in p.split("/")]
    if shadows:
        issues.append(Issue(None, None, f"{shadows[0]}: a suite may not bring node_modules (the runner "
                                        "provides @playwright/test); import the suite's own files by relative paths"))
    return issues


def _module_key(specifier: str) -> str:
    """Compare builtins without their ``node:`` scheme: ``node:fs`` and ``fs`` are one module."""
    return specifier[len(NODE_BUILTIN_PREFIX):] if specifier.startswith(NODE_BUILTIN_PREFIX) else specifier


def _package_of(key: str) -> str:
    """``@scope/pkg/sub`` -> ``@scope/pkg``; ``pkg/sub`` -> ``pkg``."""
    parts = key.split("/")
    return "/".join(parts[:2]) if key.startswith("@") else parts[0]


def module_allowed(specifier: str, allowed: Iterable[str]) -> bool:
    """A module is allowed when it, or the package it is a subpath of, is on the list. Paths are
    not modules: a relative import is judged by where it leads (:func:`playwright_issues`)."""
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


# Subpaths of allowed packages that are programs, not libraries: refused whatever the allow-list says.
REFUSED_SUBPATHS = {
    "@playwright/test/cli": "it is Playwright's command line, which installs browsers and starts test runs and "
                            "servers; a test imports @playwright/test",
}


def refusal_hint(specifier: str, uses: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """Why a well-known module is refused (None for the rest)."""
    key = _module_key(specifier)
    if _package_of(key) == "fs":
        return fs_hint(uses)
    return REFUSAL_HINTS.get(key) or REFUSAL_HINTS.get(_package_of(key))


NESTING_FIX = ("flatten it: give the inner parts names (const step = ...), build deep data with a loop or "
               "JSON.parse, and keep test code a few levels deep")


def nesting_issues(facts: Mapping[str, Any]) -> list[Issue]:
    """A file nested deeper than the parser follows (``tooDeep``): the script's fault, said with the fix,
    never a crash of the validator (which would be classed infrastructure and retried)."""
    deep = facts.get("tooDeep")
    if not deep:
        return []
    if deep.get("line") is None:
        return [Issue(None, None, f"the script nests too deeply to be checked (the parser ran out of stack); "
                                  f"{NESTING_FIX}")]
    return [Issue(deep["line"], deep["column"], f"brackets nested more than {deep['limit']} levels deep, more than "
                                                f"the validator reads; {NESTING_FIX}")]


def nesting_error() -> ValidationError:
    """The validator itself ran out of stack on a file: the same verdict as :func:`nesting_issues`."""
    return ValidationError(nesting_issues({"tooDeep": {"line": None}}))


def playwright_issues(facts: Mapping[str, Any], allowed: Sequence[str], importer: str = "",
                      files: Collection[str] = ()) -> list[Issue]:
    """Decide on what ``validate.mjs`` reported of ``importer``, a file of the suite ``files``.
    Nesting too deep to parse, then syntax errors, first: nothing else is reliable then."""
    deep = nesting_issues(facts)
    if deep:
        return deep
    syntax = [Issue(e["line"], e["column"], f"syntax error: {e['message']}") for e in facts.get("syntaxErrors", [])]
    if syntax:
        return syntax
    issues: list[Issue] = []
    for imp in facts.get("imports", []):
        spec = imp["specifier"]
        if spec.startswith("."):
            found, why = resolve_import(importer, spec, files)
            if found is None:
                issues.append(Issue(imp["line"], imp["column"], f"import of '{spec}' {why}"))
            continue
        if spec in REFUSED_SUBPATHS:
            issues.append(Issue(imp["line"], imp["column"], f"import of '{spec}' is not allowed "
                                                            f"({REFUSED_SUBPATHS[spec]})"))
            continue
        if module_allowed(spec, allowed):
            continue
        if spec.startswith("/"):
            why = "an absolute path is outside the suite's folder; import its files by relative paths"
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


K6_LOCATION = re.compile(r"^(?:(?P<file>\S+) )?line (?P<line>\d+), column (?P<col>\d+): (?P<rest>.*)$")
K6_MISSING_MODULE = re.compile(r'moduleSpecifier "([^"]+)" couldn\'t be found on local disk')


def k6_issue(output: str, work: str | None = None, script_name: str | None = None) -> Issue:
    """k6's complaint as an issue: a syntax error's ``Line 3:11`` in the script becomes the issue's line;
    an exception keeps its place in the message (``(checkout.js line 1, column 11)``)."""
    message = k6_output.first_sentence(output, work) or "k6 inspect failed without saying why"
    if "function 'default' not found in exports" in message:
        message += " (add `export default function () { ... }`, or give every scenario an `exec` function)"
    missing = K6_MISSING_MODULE.search(message)
    if missing:  # k6's own words go on about Docker volumes, which a TestRun has nothing to do with
        message = (f"import of '{missing.group(1)}' names no file beside the script; add the file to "
                   "spec.script.configMapRef.files, or fix the path")
    m = K6_LOCATION.match(message)
    if m and (m["file"] is None or script_name is None or m["file"] == script_name):
        return Issue(int(m["line"]), int(m["col"]), m["rest"])
    return Issue(None, None, message)


def summary_path_issues(facts: Mapping[str, Any]) -> list[Issue]:
    """handleSummary's files must land in k6's working directory, the only place they are collected from."""
    issues = []
    for p in facts.get("summaryPaths", []):
        path: str = p["path"]
        if path in ("stdout", "stderr") and not p.get("prefix"):
            continue
        if path.startswith("/"):
            why = "an absolute path"
        elif path.startswith("~"):
            why = "a path in a home directory"
        elif ".." in re.split(r"[\\/]", path):
            why = "a path that climbs out with '..'"
        else:
            continue
        shown = path + ("…" if p.get("prefix") else "")
        issues.append(Issue(p["line"], p["column"],
                            f"handleSummary writes '{shown}', {why}, outside the work directory: only files "
                            "written in k6's working directory are uploaded; use a relative name such as "
                            "'summary.json'"))
    issues.sort(key=lambda i: (i.line or 0, i.column or 0))
    return issues


def _outside(path: str, importer: str = "") -> str | None:
    """Why a path a k6 script names, relative to the script ``importer`` (its path in the suite), is
    outside the suite's folder (None: it is inside; ``load/a.js`` may name ``../lib/site.js``)."""
    if path.startswith("/") or path.lower().startswith("file:"):
        return "an absolute path"
    if path.startswith("~"):
        return "a path in a home directory"
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(importer), path.replace("\\", "/")))
    if joined == ".." or joined.startswith("../"):
        return "a path that climbs out with '..'"
    return None


K6_READ_FIX = ("a k6 script reads only the files of its suite: add the file to spec.script.configMapRef.files "
               "and name it by a relative path ('./data.json')")


def k6_read_issues(facts: Mapping[str, Any], importer: str = "") -> list[Issue]:
    """The files a k6 script reads (open(), k6/experimental/fs, gRPC's load()) stay in its suite's folder:
    k6 reads any file the pod's user can (``open('/var/run/secrets/...')``, a token; the runner's own
    files), and ``k6 inspect`` runs that init code while validating. open() must name its file
    literally, or the check cannot see where it leads. Relative paths are judged from ``importer``,
    the script's path in the suite."""
    issues = []
    for r in facts.get("fileReads", []):
        call, path = r["call"], r["path"]
        if path is None or r.get("prefix"):
            if call != "open":
                continue
            issues.append(Issue(r["line"], r["column"], (
                "open() with a computed path cannot be checked; name a file of the suite with a literal relative "
                "path ('./data.json'); to choose by environment, open each file by name and pick one with __ENV "
                "(const data = { a: open('./a.json'), b: open('./b.json') }[__ENV.SET])")))
            continue
        why = _outside(path, importer)
        if why:
            issues.append(Issue(r["line"], r["column"], f"{call}('{path}') reads {why}, outside the suite's folder; "
                                                         f"{K6_READ_FIX}"))
    return issues


def k6_import_issues(facts: Mapping[str, Any], importer: str = "") -> list[Issue]:
    """An import of a file outside the suite (``/etc/x.js``, ``file:///...``) reads the pod's files as code."""
    issues = []
    for imp in facts.get("imports", []):
        spec = imp["specifier"]
        why = None if spec.startswith(("http://", "https://", "k6")) else _outside(spec, importer)
        if why:
            issues.append(Issue(imp["line"], imp["column"], f"import of '{spec}' is {why}, outside the suite's "
                                                            "folder; import the suite's files by relative paths "
                                                            "('./lib/helpers.js')"))
    return issues


def k6_issues(facts: Mapping[str, Any], importer: str = "") -> list[Issue]:
    """What ``validate.mjs`` reported of the k6 script ``importer`` (its path in the suite), before k6
    itself looks at it."""
    deep = nesting_issues(facts)
    if deep:
        return deep
    issues = summary_path_issues(facts) + k6_read_issues(facts, importer) + k6_import_issues(facts, importer)
    issues.sort(key=lambda i: (i.line or 0, i.column or 0))
    return issues


def remote_modules(facts: Mapping[str, Any]) -> list[str]:
    return [i["specifier"] for i in facts.get("imports", []) if "://" in i["specifier"]]


# --- the shell: running the validators ------------------------------------------------------


def read_project(project: Project, max_bytes: int) -> dict[str, Path]:
    """The suite's files by their paths, once they pass :func:`project_issues` and their code is UTF-8."""
    files = list_files(project.root)
    sizes = {rel: path.stat().st_size for rel, path in files.items()}
    issues = project_issues(sizes, project.entry, max_bytes)
    if issues:
        raise ValidationError(issues)
    for rel, path in files.items():
        if rel == project.entry or rel.endswith(CODE_SUFFIXES):
            try:
                path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                what = "the script" if rel == project.entry else rel
                raise ValidationError([Issue(None, None, f"{what} is not UTF-8 text (byte {exc.start})")]) from exc
    return files


def validate_playwright(root: Path, files: Sequence[str], entry: str | None, *, node: str, validator: Path,
                        node_modules: Path, allowed: Sequence[str], timeout: float) -> None:
    """Every code file of the suite under ``root``; issues of the script first, then of its files
    (those named by their paths)."""
    code = sorted((f for f in files if f.endswith(CODE_SUFFIXES)), key=lambda f: (f != entry, f))
    if not code:
        return
    reports = file_facts([root / f for f in code], node=node, validator=validator, node_modules=node_modules,
                         timeout=timeout)
    issues: list[Issue] = []
    for rel, facts in zip(code, reports, strict=True):
        found = playwright_issues(facts, allowed, rel, files)
        issues += found if rel == entry else [replace(i, file=rel) for i in found]
    if issues:
        raise ValidationError(issues)


def file_facts(paths: Sequence[Path], *, node: str, validator: Path, node_modules: Path,
               timeout: float) -> list[dict[str, Any]]:
    """What ``validate.mjs`` sees in each file (imports, findings, handleSummary's files...), in order,
    from one node process."""
    try:
        proc = subprocess.run(
            [node, str(validator), *(str(p) for p in paths)],
            capture_output=True, text=True, timeout=timeout,
            env={"NODE_PATH": str(node_modules), "PATH": "/usr/local/bin:/usr/bin:/bin"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValidatorUnavailable(f"the script validator could not run: {exc}") from exc
    if proc.returncode != 0 and "Maximum call stack size exceeded" in proc.stderr:
        raise nesting_error()  # validate.mjs reports this itself; a crash all the same is the script's depth
    if proc.returncode != 0:
        raise ValidatorUnavailable(f"the script validator failed: {proc.stderr.strip()[-500:]}")
    try:
        reports: list[dict[str, Any]] = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise ValidatorUnavailable(f"the script validator printed no JSON: {proc.stdout[:200]!r}") from exc
    if len(reports) != len(paths):
        raise ValidatorUnavailable(f"the script validator reported {len(reports)} of {len(paths)} files")
    return reports


def script_facts(script: Path, *, node: str, validator: Path, node_modules: Path, timeout: float) -> dict[str, Any]:
    """What ``validate.mjs`` sees in one script."""
    return file_facts([script], node=node, validator=validator, node_modules=node_modules, timeout=timeout)[0]


NO_VUS = "the number of VUs must be more than 0"


def _k6_inspect(k6: str, script: Path, env: Mapping[str, str], cwd: Path,
                timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [k6, "inspect", "--execution-requirements", str(script)],
        capture_output=True, text=True, timeout=timeout, env=dict(env), cwd=str(cwd),
    )


def validate_k6(script: Path, *, k6: str, env: Mapping[str, str], cwd: Path, timeout: float,
                node: str, validator: Path, node_modules: Path) -> None:
    facts = script_facts(script, node=node, validator=validator, node_modules=node_modules, timeout=timeout)
    try:
        importer = script.relative_to(cwd).as_posix()  # k6 runs from the suite's folder
    except ValueError:
        importer = script.name
    issues = k6_issues(facts, importer)
    if issues:
        raise ValidationError(issues)
    try:
        proc = _k6_inspect(k6, script, env, cwd, timeout)
        if proc.returncode != 0 and NO_VUS in proc.stderr + proc.stdout:
            # `k6 run` gives a script that names no VUs one; `k6 inspect` does not (k6 v1), and would
            # refuse `options = { iterations: 1 }`, which runs. Ask again with run's default.
            proc = _k6_inspect(k6, script, {**env, "K6_VUS": "1"}, cwd, timeout)
    except FileNotFoundError as exc:
        raise ValidatorUnavailable(f"k6 is not installed: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        remote = remote_modules(facts)
        if remote:
            # k6 waits up to a minute per module; a dropped connection (egress blocked) looks like this.
            raise NetworkUnavailable(
                f"k6 inspect did not finish within {timeout:.0f} s while the script imports remote modules "
                f"({', '.join(remote[:3])}): they did not answer. A network failure is retried with backoff; "
                "if it persists, vendor the modules (paste their code into the script, or ship them beside "
                "the script and import them by a relative path) or allow the runner pod egress to their hosts"
            ) from exc
        # Init code that never ends is the script's fault: say so.
        raise ValidationError([Issue(None, None, f"k6 inspect did not finish within {timeout:.0f} s "
                                                 "(does the script's init code loop or wait?)")]) from exc
    if proc.returncode != 0:
        output = proc.stderr + proc.stdout
        fetch = k6_output.module_fetch_failure(output)
        if fetch is not None and fetch.network:
            raise NetworkUnavailable(k6_output.fetch_message(fetch))
        if fetch is not None:
            raise ValidationError([Issue(None, None, k6_output.fetch_message(fetch))])
        raise ValidationError([k6_issue(output, str(script.parent), script.name)])
