"""The script's folder: finding it, listing it, copying it into the work directory, and resolving
the relative imports between its files.

The operator mounts the run's files at their paths (a read-only ConfigMap volume).
``RunnerConfig.scriptPath`` names the script in that folder, or the folder itself when the whole
folder is the suite (every test file in it runs); ``RunnerConfig.scriptName`` is the script's
path relative to the folder, the name the user gave it. Reports name files by their paths in the
folder, so they carry the user's names.

:func:`locate` and :func:`resolve_import` are pure; :func:`list_files` and :func:`copy_into`
touch the disk.
"""

from __future__ import annotations

import posixpath
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

# Files Node.js and Playwright load as code (validated); anything else is data.
CODE_SUFFIXES = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
# What an extensionless import may name, in the order TypeScript-style resolution tries them.
RESOLVED_SUFFIXES = (".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs", ".json")
# `import './x.js'` in TypeScript names x.ts when that is what exists (Playwright resolves it so too).
TS_FOR_JS = {".js": (".ts", ".tsx"), ".jsx": (".tsx",), ".mjs": (".mts",), ".cjs": (".cts",)}


@dataclass(frozen=True)
class Project:
    root: Path  # the mounted folder
    entry: str | None  # the script's path in it; None: the whole folder is the suite


@dataclass(frozen=True)
class Placed:
    files: tuple[str, ...]  # every file's path under the destination
    entry: str | None  # the script's path under the destination (given a code suffix if it had none)

    def __str__(self) -> str:
        if self.entry is None:
            return f"a suite of {len(self.files)} files"
        others = len(self.files) - 1
        return self.entry + (f" and {others} more file{'s' if others > 1 else ''}" if others else "")


def locate(script_path: Path, script_name: str) -> Project:
    """The folder and the script in it. ``scriptName`` is the script's path relative to the
    folder; when it is empty or does not end ``scriptPath`` (an older operator, a bare file),
    the folder is the script's own."""
    name = script_name.strip("/")
    text = script_path.as_posix()
    if name and text.endswith("/" + name):
        return Project(Path(text[: -len(name) - 1]), name)
    if script_path.is_dir():
        return Project(script_path, None)
    return Project(script_path.parent, script_path.name)


def list_files(root: Path) -> dict[str, Path]:
    """Every file under ``root`` by its relative path, as a ConfigMap volume shows them: the
    volume's own entries (``..data``, ``..2030_01_01_...``) are skipped, and links are followed
    while they stay inside the folder (a volume's files are links into ``..data``)."""
    base = root.resolve()
    found: dict[str, Path] = {}
    seen: set[Path] = set()

    def walk(folder: Path, prefix: str) -> None:
        real_folder = folder.resolve()
        if real_folder in seen:
            return
        seen.add(real_folder)
        for child in sorted(folder.iterdir()):
            if child.name.startswith(".."):
                continue
            real = child.resolve()
            if real != base and base not in real.parents:
                continue
            if real.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif real.is_file():
                found[f"{prefix}{child.name}"] = real

    walk(root, "")
    return found


def runnable(path: str, default_suffix: str) -> str:
    """A name the tool loads as code: the path itself, or with ``default_suffix`` added."""
    return path if path.endswith(CODE_SUFFIXES) else path + default_suffix


def copy_into(files: Mapping[str, Path], entry: str | None, dest: Path, default_suffix: str) -> Placed:
    """Copy the files under ``dest`` keeping their layout (writable copies of read-only mounts)."""
    placed = []
    for rel, source in files.items():
        name = runnable(rel, default_suffix) if rel == entry else rel
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        placed.append(name)
    return Placed(tuple(sorted(placed)), runnable(entry, default_suffix) if entry else None)


def import_candidates(path: str, specifier: str) -> list[str]:
    """The files ``import '<specifier>'`` may mean, once resolved to ``path`` in the folder."""
    stem = "" if path == "." else path
    index = [posixpath.join(stem, "index" + s) for s in RESOLVED_SUFFIXES]
    if not stem or specifier.endswith("/"):
        return index
    base, suffix = posixpath.splitext(stem)
    if suffix in RESOLVED_SUFFIXES:
        return [stem, *(base + ts for ts in TS_FOR_JS.get(suffix, ()))]
    return [stem, *(stem + s for s in RESOLVED_SUFFIXES), *index]


def resolve_import(importer: str, specifier: str, files: Collection[str]) -> tuple[str | None, str]:
    """A relative import of ``importer`` (a path in the folder): the file it names, or why none
    (words that follow "import of '<specifier>'")."""
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(importer), specifier))
    if joined == ".." or joined.startswith("../"):
        return None, ("climbs out of the suite's folder (the run has only the files its TestRun gives, "
                      "at their paths)")
    candidates = import_candidates(joined, specifier)
    for candidate in candidates:
        if candidate in files:
            return candidate, ""
    shown = ", ".join(candidates[:4]) + (", ..." if len(candidates) > 4 else "")
    return None, (f"names no file of the suite (looked for {shown}); add the file to "
                  "spec.script.configMapRef.files, or fix the path")
