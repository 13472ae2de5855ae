"""Artifacts to S3: every file of the out directory, under the attempt's own prefix.

Key layout: ``<prefix>/<path relative to the out directory>``, where the operator builds the
prefix with :func:`supercheck_contract.artifact_prefix` (``namespace/name/uid/attempt-N``):
the uid and the attempt make it unique, so a later run never overwrites an earlier one.
``<prefix>/result.json`` is written last, after every other upload has ended: whoever sees
it can trust the rest is there.

Uploads run in parallel (a thread pool over files; boto3's transfer manager splits large
files into multipart uploads); each file is retried with backoff on errors the SDK's own
retries did not absorb. Every object gets its Content-Type, so the HTML report (and the
trace viewer inside it) is browsable straight from the bucket.
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from supercheck_contract import RESULT_JSON_NAME, ArtifactFile

MiB = 1024 * 1024

_T = TypeVar("_T")


class S3Client(Protocol):
    """The calls the runner makes on a boto3 S3 client (boto3 itself has no type information)."""

    def head_bucket(self, *, Bucket: str) -> Mapping[str, Any]: ...

    def put_object(self, *, Bucket: str, Key: str, Body: bytes | IO[bytes], ContentType: str) -> Mapping[str, Any]: ...

    def upload_file(self, Filename: str, Bucket: str, Key: str, ExtraArgs: Mapping[str, str] | None = None,
                    Callback: Callable[[int], None] | None = None, Config: TransferConfig | None = None) -> None: ...


# mimetypes' table depends on the machine (/etc/mime.types); these must not.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".zip": "application/zip",
    ".gz": "application/gzip",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".trace": "application/octet-stream",
    ".network": "application/octet-stream",
    ".stacks": "application/octet-stream",
}


def content_type(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in CONTENT_TYPES:
        return CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


def object_key(prefix: str, relative: str) -> str:
    return f"{prefix.strip('/')}/{relative.lstrip('/')}"


@dataclass(frozen=True)
class PlannedUpload:
    path: Path
    key: str
    size: int
    content_type: str


# Playwright's bookkeeping under its output directory: trace chunks, videos being recorded
# (.playwright-artifacts-<worker>/, removed when a worker ends well, left behind when it is
# stopped) and the list of failed tests for --last-failed (.last-run.json). Never uploaded.
TEMPORARY_PREFIXES = (".playwright-artifacts-", ".playwright-tmp")
TEMPORARY_NAMES = frozenset({".last-run.json"})
# Playwright's HTML report copies every attachment that is a file into report/data/ under the
# SHA-1 of its content (plus the file's extension), and links only those copies.
REPORT_DATA_DIR = "report/data"
TEST_RESULTS_DIR = "test-results"


def is_temporary(relative: str) -> bool:
    parts = relative.split("/")
    return parts[-1] in TEMPORARY_NAMES or any(p.startswith(TEMPORARY_PREFIXES) for p in parts)


def _sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def report_copies(files: list[tuple[Path, str, int]]) -> set[str]:
    """Files under test-results/ whose content the HTML report holds in report/data/: the report
    links its copy, so uploading the original would store it twice. Only files of a size and
    extension some report copy has are hashed."""
    copies = {(rel.rsplit("/", 1)[-1], size) for _, rel, size in files if rel.startswith(REPORT_DATA_DIR + "/")}
    if not copies:
        return set()
    sizes = {(Path(name).suffix, size) for name, size in copies}
    names = {name for name, _ in copies}
    duplicates = set()
    for path, rel, size in files:
        if not rel.startswith(TEST_RESULTS_DIR + "/") or (path.suffix, size) not in sizes:
            continue
        if f"{_sha1(path)}{path.suffix}" in names:
            duplicates.add(rel)
    return duplicates


def plan(out_dir: Path, prefix: str) -> list[PlannedUpload]:
    """Every regular file under ``out_dir`` once (symlinks are not followed: they could point
    anywhere), largest first so the long multipart uploads start early. Left out: ``result.json``
    (written last, separately), Playwright's temporary files, and test-results/ files the HTML
    report holds a copy of."""
    files = []
    for path in out_dir.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        rel = path.relative_to(out_dir).as_posix()
        if rel == RESULT_JSON_NAME or is_temporary(rel):
            continue
        files.append((path, rel, path.stat().st_size))
    duplicates = report_copies(files)
    items = [PlannedUpload(path, object_key(prefix, rel), size, content_type(rel))
             for path, rel, size in files if rel not in duplicates]
    items.sort(key=lambda u: (-u.size, u.key))
    return items


def relative_key(prefix: str, key: str) -> str:
    """A key as result.json lists it: relative to the attempt's prefix."""
    head = prefix.strip("/") + "/"
    return key[len(head):] if key.startswith(head) else key


def listing(prefix: str, items: list[PlannedUpload], report: UploadReport) -> tuple[list[ArtifactFile], list[str]]:
    """What result.json says was uploaded (key relative to the prefix, bytes), and what was not."""
    done = set(report.uploaded)
    uploaded = sorted((ArtifactFile(key=relative_key(prefix, i.key), bytes=i.size) for i in items if i.key in done),
                      key=lambda f: f.key)
    failed = sorted(relative_key(prefix, i.key) for i in items if i.key not in done)
    return uploaded, failed


@dataclass
class UploadReport:
    uploaded: list[str] = field(default_factory=list)  # keys, in completion order
    failed: dict[str, str] = field(default_factory=dict)  # key -> error
    bytes: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


class S3Unavailable(Exception):
    """S3 cannot be reached or the bucket is missing: an infrastructure error of ours."""


def make_client(endpoint_url: str | None, region: str, *, pool: int = 32, connect_timeout: float = 5,
                read_timeout: float = 60, attempts: int = 3) -> S3Client:
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(
            retries={"max_attempts": attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=pool,
            s3={"addressing_style": "path"},  # endpoints like MinIO and moto serve buckets by path
        ),
    )
    return client


def preflight(client: S3Client, bucket: str) -> None:
    """Fail fast, before the test runs, when the bucket cannot be reached: running a test whose
    results cannot be kept wastes the attempt."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise S3Unavailable(f"S3 bucket '{bucket}' is not usable ({code or exc})") from exc
    except BotoCoreError as exc:
        raise S3Unavailable(f"S3 is unreachable: {exc}") from exc


class Uploader:
    def __init__(self, client: S3Client, bucket: str, *, concurrency: int = 16, attempts: int = 4,
                 backoff_seconds: float = 0.5, multipart_threshold: int = 8 * MiB,
                 multipart_chunksize: int = 8 * MiB, sleep: Callable[[float], None] = time.sleep):
        self.client = client
        self.bucket = bucket
        self.concurrency = max(1, concurrency)
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=4,  # parts of one file in parallel; files are parallel already
            use_threads=True,
        )

    def _retried(self, action: Callable[[], _T], errors: tuple[type[Exception], ...]) -> _T:
        """``action()``, tried up to ``attempts`` times with backoff on ``errors``; the last error is raised."""
        for attempt in range(self.attempts):
            try:
                return action()
            except errors:
                if attempt + 1 >= self.attempts:
                    raise
                self.sleep(self.backoff_seconds * (2 ** attempt))
        raise AssertionError("unreachable: attempts is at least 1")

    def upload_file(self, item: PlannedUpload) -> None:
        def once() -> None:
            if item.size < self.transfer.multipart_threshold:
                # One request; the transfer manager's thread pool would cost more than the upload.
                with open(item.path, "rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=item.key, Body=body, ContentType=item.content_type)
            else:
                self.client.upload_file(
                    str(item.path), self.bucket, item.key,
                    ExtraArgs={"ContentType": item.content_type}, Config=self.transfer,
                )

        self._retried(once, (BotoCoreError, ClientError, OSError))

    def upload_all(self, items: list[PlannedUpload]) -> UploadReport:
        report = UploadReport()
        started = time.monotonic()
        if items:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
                futures = {pool.submit(self.upload_file, item): item for item in items}
                for future in as_completed(futures):
                    item = futures[future]
                    try:
                        future.result()
                        report.uploaded.append(item.key)
                        report.bytes += item.size
                    except Exception as exc:  # noqa: BLE001 - recorded per file, reported as a whole
                        report.failed[item.key] = str(exc)
        report.seconds = time.monotonic() - started
        return report

    def put_result(self, prefix: str, body: str) -> str:
        """``result.json``, after everything else. Retried like any file."""
        key = object_key(prefix, RESULT_JSON_NAME)
        data = body.encode()
        self._retried(
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json"),
            (BotoCoreError, ClientError),
        )
        return key
