"""handleSummary's files: what k6 wrote in its working directory, moved into out/ to be uploaded.

k6 writes every key ``handleSummary`` returns (but ``stdout`` and ``stderr``) as a file, relative
to its working directory, which is the work directory (the script's folder). A k6 script has no
other way to write a file, so the files that are new or changed there after the run, outside
out/, are handleSummary's: :func:`written` compares two snapshots (pure), :func:`collect` moves
them into out/ under the same relative path, so ``'summary.json'`` ends up at
``<prefix>/summary.json`` in S3.

A file named like one of the runner's own (``console.log``, ``k6-summary.json``...) would
replace it: it goes to ``handleSummary/<name>`` instead (:func:`destination`). Paths outside the
work directory are refused before the run (``validate.summary_path_issues``).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

from supercheck_contract import RESULT_JSON_NAME
from supercheck_runner.k6 import CONSOLE_LOG, METRICS_JSON, REPORT_INDEX, SUMMARY_JSON

RESERVED = frozenset({SUMMARY_JSON, METRICS_JSON, CONSOLE_LOG, REPORT_INDEX, RESULT_JSON_NAME})
RENAMED_DIR = "handleSummary"

Snapshot = Mapping[str, tuple[int, int, int]]  # relative path -> (inode, size, mtime in ns)


def snapshot(root: Path, skip: Collection[str]) -> dict[str, tuple[int, int, int]]:
    """Every regular file under ``root`` (symlinks not followed), but under the top-level names in ``skip``."""
    files: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            st = path.stat()
            rel = path.relative_to(root).as_posix()
            if here == root and name in skip:
                continue
            files[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return files


def written(before: Snapshot, after: Snapshot) -> list[str]:
    """Files that are new, or were rewritten, since ``before``."""
    return sorted(rel for rel, stat in after.items() if before.get(rel) != stat)


def destination(rel: str) -> str:
    """Where a handleSummary file goes under out/: its own path, unless the runner's own file has it."""
    return f"{RENAMED_DIR}/{rel}" if rel in RESERVED else rel


def collect(work: Path, out: Path, files: list[str]) -> list[tuple[str, str]]:
    """Move ``files`` (relative to ``work``) into ``out``; returns (written as, uploaded as) pairs."""
    moved = []
    for rel in files:
        target = out / destination(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / rel, target)
        moved.append((rel, destination(rel)))
    return moved
