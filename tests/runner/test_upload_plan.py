"""What the upload holds (pure: files on disk in, planned keys out): each artifact once,
Playwright's temporary files never, and result.json's listing of what went up."""

from __future__ import annotations

import hashlib
from pathlib import Path

from supercheck_contract import ArtifactFile
from supercheck_runner.artifacts import Caps, UploadReport, is_temporary, listing, plan, usefulness, within_caps

PREFIX = "team-a/checkout/uid-1/attempt-1"


def write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def report_copy(root: Path, data: bytes, ext: str) -> str:
    """As Playwright's HTML reporter names its copy of an attachment: SHA-1 of the content + extension."""
    rel = f"report/data/{hashlib.sha1(data).hexdigest()}{ext}"
    write(root, rel, data)
    return rel


def keys(root: Path) -> set[str]:
    return {i.key[len(PREFIX) + 1:] for i in plan(root, PREFIX)}


def test_playwright_temporary_files_are_never_planned(tmp_path):
    write(tmp_path, "test-results/.playwright-artifacts-0/traces/abc-recording1.trace", b"chunk")
    write(tmp_path, "test-results/.playwright-artifacts-1/4f2a.webm", b"video in progress")
    write(tmp_path, "test-results/.last-run.json", b'{"status":"failed"}')
    write(tmp_path, "test-results/t/trace.zip", b"trace")
    assert keys(tmp_path) == {"test-results/t/trace.zip"}
    assert is_temporary("test-results/.playwright-artifacts-12/x") and not is_temporary("report/data/ab.zip")


def test_a_file_the_html_report_holds_a_copy_of_is_uploaded_once_as_the_copy(tmp_path):
    screenshot, trace = b"\x89PNG screenshot", b"PK trace"
    write(tmp_path, "test-results/t/test-failed-1.png", screenshot)
    write(tmp_path, "test-results/t/trace.zip", trace)
    png = report_copy(tmp_path, screenshot, ".png")
    zip_ = report_copy(tmp_path, trace, ".zip")
    write(tmp_path, "report/index.html", b"<html>")
    assert keys(tmp_path) == {"report/index.html", png, zip_}


def test_files_without_a_report_copy_are_kept(tmp_path):
    write(tmp_path, "report/index.html", b"<html>")
    report_copy(tmp_path, b"AAAA", ".png")
    write(tmp_path, "test-results/t/other.png", b"BBBB")  # same size and extension, other content
    write(tmp_path, "test-results/t/notes.txt", b"written with testInfo.outputPath(), never attached")
    write(tmp_path, "test-results/t/same-bytes.zip", b"AAAA")  # same content, but the report has no .zip of it
    assert {"test-results/t/other.png", "test-results/t/notes.txt", "test-results/t/same-bytes.zip"} <= keys(tmp_path)


def test_without_an_html_report_everything_under_test_results_is_kept(tmp_path):
    write(tmp_path, "test-results/t/test-failed-1.png", b"png")
    write(tmp_path, "test-results/t/trace.zip", b"zip")
    assert keys(tmp_path) == {"test-results/t/test-failed-1.png", "test-results/t/trace.zip"}


def test_listing_is_relative_to_the_prefix_with_sizes_and_names_what_failed(tmp_path):
    write(tmp_path, "report/index.html", b"<html></html>")
    write(tmp_path, "console.log", b"log")
    write(tmp_path, "junit.xml", b"<testsuites/>")
    items = plan(tmp_path, PREFIX)
    report = UploadReport(uploaded=[f"{PREFIX}/report/index.html", f"{PREFIX}/console.log"],
                          failed={f"{PREFIX}/junit.xml": "boom"})
    uploaded, failed = listing(PREFIX, items, report)
    assert uploaded == [ArtifactFile(key="console.log", bytes=3), ArtifactFile(key="report/index.html", bytes=13)]
    assert failed == ["junit.xml"]


# ---------------------------------------------------------------- caps


def test_usefulness_puts_reports_and_logs_first_then_the_report_then_evidence_then_the_rest():
    assert [usefulness(r) for r in ("console.log", "report/index.html", "junit.xml", "load/a.k6/k6-summary.json")] \
        == [0, 0, 0, 0]
    assert [usefulness(r) for r in ("report/trace/index.js", "blob/shard-1.zip")] == [1, 1]
    assert [usefulness(r) for r in ("test-results/t/trace.zip", "report/data/ab.png", "loot/shot.jpg")] == [2, 2, 2]
    assert [usefulness(r) for r in ("test-results/t/video.webm", "loot/x.bin", "report/data/index.html")] == [3, 3, 3]


def test_caps_keep_the_most_useful_files_that_fit_and_never_one_over_the_per_file_limit(tmp_path):
    write(tmp_path, "console.log", b"l" * 10)
    write(tmp_path, "report/index.html", b"h" * 100)
    write(tmp_path, "test-results/t/trace.zip", b"t" * 500)
    write(tmp_path, "test-results/t/video.webm", b"v" * 300)
    write(tmp_path, "loot/a.txt", b"a" * 5)
    items = plan(tmp_path, PREFIX)
    rel = {i.key: i.key[len(PREFIX) + 1:] for i in items}

    def kept(caps: Caps) -> tuple[set[str], set[str]]:
        taken, left = within_caps(items, PREFIX, caps)
        assert [i.key for i in taken] == [i.key for i in items if i in taken]  # the plan's order stays
        return {rel[i.key] for i in taken}, {rel[i.key] for i in left}

    assert kept(Caps(10**6, 3)) == ({"console.log", "report/index.html", "test-results/t/trace.zip"},
                                    {"test-results/t/video.webm", "loot/a.txt"})
    # 620 bytes: the trace (500) fits after the first two (110); the video no more, the 5 bytes still.
    assert kept(Caps(620, 100)) == ({"console.log", "report/index.html", "test-results/t/trace.zip", "loot/a.txt"},
                                    {"test-results/t/video.webm"})
    assert kept(Caps(10**6, 100, max_object_bytes=400))[1] == {"test-results/t/trace.zip"}
    assert kept(Caps(0, 100)) == (set(), set(rel.values()))
    assert Caps(2 * 1024 * 1024, 4, 1024).describe() == "at most 4 files and 2 MiB per run, each at most 1024 bytes"


def test_a_sparse_file_counts_as_the_bytes_its_upload_would_send(tmp_path):
    with open(tmp_path / "hole.bin", "wb") as f:
        f.truncate(64 * 1024 * 1024)
    (item,) = plan(tmp_path, PREFIX)
    assert item.size == 64 * 1024 * 1024
    assert within_caps([item], PREFIX, Caps(32 * 1024 * 1024, 10))[0] == []
