"""The files a run's script is made of, and where each one goes in the runner's folder.

A script is one file (``spec.script.inline``, or one key of a ConfigMap), one file with the
files it imports (``configMapRef.files``), or a whole ConfigMap (``configMapRef`` without
``key``: a Playwright suite whose ``*.spec.*`` / ``*.test.*`` files all run). The operator
copies those keys into the run's own snapshot ConfigMap; the pod mounts each key at its path
(ConfigMap keys cannot hold a ``/``, volume ``items`` can); ``RunnerConfig.scriptPath`` names
the script in that folder (or the folder itself for a whole suite) and ``scriptName`` is the
name the user gave, so the reports carry it.

Pure functions over the spec and, for a whole ConfigMap, its keys.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection
from dataclasses import dataclass

from supercheck.models import TestRunSpec
from supercheck.models import path_clash as clash

# Playwright's default testMatch, **/*.@(spec|test).?(c|m)[jt]s?(x), on a file name.
TEST_FILE = re.compile(r"\.(spec|test)\.[cm]?[jt]sx?$")
INLINE_SUFFIX = {"playwright": ".spec.ts", "k6": ".js"}
MAX_KEY = 253  # a ConfigMap key (and well within a file name's 255 bytes)


class LayoutError(ValueError):
    """Two files of the run would land on one path (or one file where another needs a folder)."""


@dataclass(frozen=True)
class ScriptFile:
    key: str  # in the source ConfigMap and in the snapshot
    path: str  # relative to the runner's folder


@dataclass(frozen=True)
class Layout:
    files: tuple[ScriptFile, ...]
    entry: str | None  # the script's path; None: a whole suite, every test file runs

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.files]


def whole_configmap(spec: TestRunSpec) -> bool:
    """The whole ConfigMap is the suite (configMapRef without key)."""
    ref = spec.script.configMapRef
    return ref is not None and ref.key is None


def inline_name(run_name: str, test_type: str) -> str:
    """``<run name>.spec.ts`` (k6: ``<run name>.js``), cut and made unique by a hash when too long."""
    suffix = INLINE_SUFFIX.get(test_type, ".js")
    if len(run_name) + len(suffix) <= MAX_KEY:
        return run_name + suffix
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:8]
    return f"{run_name[:MAX_KEY - len(suffix) - 9]}-{digest}{suffix}"


def script_name(spec: TestRunSpec, run_name: str) -> str:
    """The name the user gave the script (``RunnerConfig.scriptName``); empty for a whole suite."""
    ref = spec.script.configMapRef
    if ref is None:
        return inline_name(run_name, spec.type)
    return ref.place or ""


def source_keys(spec: TestRunSpec) -> list[str] | None:
    """The keys to copy from the source ConfigMap: the script's and its files'; None: all of them."""
    ref = spec.script.configMapRef
    if ref is None or ref.key is None:
        return None
    return [ref.key, *(f.key for f in ref.files)]


def layout(spec: TestRunSpec, run_name: str, keys: Collection[str] | None = None) -> Layout:
    """Every file of the run and its path. ``keys``: those of the ConfigMap, needed for a whole suite
    (each lands at its key unless ``files`` gives it a path). Raises :class:`LayoutError`."""
    ref = spec.script.configMapRef
    if ref is None:
        name = inline_name(run_name, spec.type)
        return Layout((ScriptFile(name, name),), name)
    placed = {f.key: f.place for f in ref.files}
    if ref.key is not None:
        files = [ScriptFile(ref.key, ref.place or ref.key), *(ScriptFile(k, p) for k, p in placed.items())]
        entry: str | None = ref.place
    else:
        if keys is None:
            raise ValueError("a whole ConfigMap's layout needs its keys")
        files = [ScriptFile(k, placed.get(k, k)) for k in sorted(keys)]
        entry = None
    problem = clash([f.path for f in files])
    if problem:
        raise LayoutError(f"ConfigMap {ref.name!r}: {problem}; give it another path in "
                          "spec.script.configMapRef.files[].path")
    return Layout(tuple(files), entry)


def runnable_tests(lay: Layout) -> list[str]:
    """The files Playwright collects in a whole suite."""
    return [f.path for f in lay.files if TEST_FILE.search(f.path.rsplit("/", 1)[-1])]
