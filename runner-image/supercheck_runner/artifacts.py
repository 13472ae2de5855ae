"""Artifacts to S3: every file of the out directory, under the attempt's own prefix.

Key layout: ``<prefix>/<path relative to the out directory>``, where the operator builds the
prefix with :func:`supercheck_contract.artifact_prefix` (``namespace/name/uid/attempt-N``):
the uid and the attempt make it unique, so a later run never overwrites an earlier one.
``<prefix>/result.json`` is written last, after every other upload has ended: whoever sees
it can trust the rest is there.

Uploads run in parallel (a thread pool over files; boto3's transfer manager splits large
files into multipart uploads). When S3 is unavailable the uploader does not give up after a
few tries: it waits with backoff and tries again until a give-up time (the upload window,
:func:`supercheck_runner.timer.upload_give_up_at`), one small file first (a probe) and the rest
once S3 answers, telling the caller each time it waits (the runner prints it as a progress line
the operator shows as the ``Uploading`` phase). What an error means: :mod:`.storage`.
Every object gets its Content-Type, so the HTML report (and the trace viewer inside it) is
browsable straight from the bucket.
"""

from __future__ import annotations

import hashlib
import mimetypes
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from supercheck_contract import RESULT_JSON_NAME, ArtifactFile
from supercheck_runner.storage import Kind, StorageProblem, classify
from supercheck_runner.timer import (
    UPLOAD_CONNECT_TIMEOUT_SECONDS,
    UPLOAD_READ_TIMEOUT_SECONDS,
    UPLOAD_SDK_ATTEMPTS,
)

if TYPE_CHECKING:  # boto3 is imported where a key's client or a multipart upload needs it: see make_client
    from boto3.s3.transfer import TransferConfig

MiB = 1024 * 1024
# Not retried: a file that cannot be read, an upload the grant refuses (expired, outside the prefix).
FINAL_KINDS = frozenset({Kind.LOCAL, Kind.REFUSED})

class S3Client(Protocol):
    """The calls the runner makes on a boto3 S3 client (boto3 itself has no type information)."""

    def head_bucket(self, *, Bucket: str) -> Mapping[str, Any]: ...

    def put_object(self, *, Bucket: str, Key: str, Body: bytes | IO[bytes], ContentType: str) -> Mapping[str, Any]: ...

    def upload_file(self, Filename: str, Bucket: str, Key: str, ExtraArgs: Mapping[str, str] | None = None,
                    Callback: Callable[[int], None] | None = None, Config: TransferConfig | None = None) -> None: ...

    # A job's merge reads the shards' blob reports.
    def list_objects_v2(self, **kwargs: str) -> Mapping[str, Any]: ...

    def download_file(self, Bucket: str, Key: str, Filename: str) -> None: ...


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


# ---------------------------------------------------------------- caps: what one attempt may store

# The run's own outcome files, named alike by every engine (Playwright's JSON and JUnit reports,
# k6's summary, the runner's console log): small, and what a reader opens first.
_FIRST_NAMES = frozenset({"console.log", "junit.xml", "results.json", "playwright-results.json", "k6-summary.json",
                          "index.html"})
# Traces and screenshots explain a failure; videos and the rest are left out first.
_EVIDENCE = frozenset({".zip", ".trace", ".network", ".stacks", ".png", ".jpg", ".jpeg", ".webp"})


def usefulness(relative: str) -> int:
    """0 most useful (uploaded first under a cap): the files at the top of out/, the reports' entry
    points and the logs (a k6 shard's, in each test file's folder, too); 1 the
    rest of the HTML report and a shard's blob report (the job's merge reads it); 2 traces and
    screenshots; 3 the rest (videos, attachments, whatever the test wrote)."""
    name = relative.rsplit("/", 1)[-1]
    if "/" not in relative or (name in _FIRST_NAMES and not relative.startswith(REPORT_DATA_DIR + "/")):
        return 0
    if relative.startswith("blob/") or (relative.startswith("report/")
                                        and not relative.startswith(REPORT_DATA_DIR + "/")):
        return 1
    if Path(name).suffix.lower() in _EVIDENCE:
        return 2
    return 3


@dataclass(frozen=True)
class Caps:
    """What one attempt may store: ``max_bytes`` and ``max_files`` in all (result.json aside, always
    written), each file at most ``max_object_bytes`` (the grant's limit; None: no limit of its own)."""

    max_bytes: int
    max_files: int
    max_object_bytes: int | None = None

    def describe(self) -> str:
        each = f", each at most {_size(self.max_object_bytes)}" if self.max_object_bytes is not None else ""
        return f"at most {self.max_files} files and {_size(self.max_bytes)} per run{each}"


def _size(n: int) -> str:
    return f"{n / MiB:.0f} MiB" if n >= MiB else f"{n} bytes"


def within_caps(items: list[PlannedUpload], prefix: str, caps: Caps) -> tuple[list[PlannedUpload], list[PlannedUpload]]:
    """The files to upload and those left out: the most useful first (:func:`usefulness`), the
    smaller first within a kind, each taken while it fits; a file larger than the per-file limit is
    never taken. Sizes are the files' lengths (a sparse file counts as what its upload would send).
    The kept files stay in the plan's order (largest first, for the uploads' parallelism)."""
    order = sorted(items, key=lambda u: (usefulness(relative_key(prefix, u.key)), u.size, u.key))
    kept: set[str] = set()
    files = total = 0
    for item in order:
        too_big = caps.max_object_bytes is not None and item.size > caps.max_object_bytes
        if too_big or files >= caps.max_files or total + item.size > caps.max_bytes:
            continue
        kept.add(item.key)
        files += 1
        total += item.size
    return [i for i in items if i.key in kept], [i for i in items if i.key not in kept]


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
    waited: float = 0.0  # seconds spent waiting for S3 to come back
    problem: StorageProblem | None = None  # the last S3 problem met, if any
    stopped: bool = False  # gave up before the window's end: the runner was asked to stop

    @property
    def ok(self) -> bool:
        return not self.failed


class S3Unavailable(Exception):
    """S3 cannot be used for this run: what the preflight found (see :attr:`problem`)."""

    def __init__(self, problem: StorageProblem):
        super().__init__(problem.text)
        self.problem = problem


@dataclass(frozen=True)
class Backoff:
    """Waits between upload rounds while S3 is unavailable: ``first``, doubling, at most ``maximum``."""

    first: float = 1.0
    maximum: float = 15.0

    def delay(self, retry: int) -> float:
        return max(0.0, min(self.maximum, self.first * 2.0 ** min(retry, 30)))


@dataclass(frozen=True)
class Waiting:
    """What the uploader says each time it waits for S3."""

    problem: StorageProblem
    what: str  # what is waiting: "3 of 12 files", "result.json"
    give_up_at: float  # time.monotonic()
    retry_in: float


def make_client(endpoint_url: str | None, region: str, *, pool: int = 32,
                connect_timeout: float = UPLOAD_CONNECT_TIMEOUT_SECONDS,
                read_timeout: float = UPLOAD_READ_TIMEOUT_SECONDS, attempts: int = UPLOAD_SDK_ATTEMPTS) -> S3Client:
    """A boto3 S3 client. Raises ValueError for an endpoint that is not a URL.

    boto3 is imported here, not with the module: the operator's pods upload through their grant
    (:mod:`.grant`) and never need it, and importing it (s3transfer, botocore's session) cost a
    third of the runner's own CPU in every run."""
    import boto3
    from botocore.config import Config

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


def list_keys(client: S3Client, bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` (all pages of the listing)."""
    keys: list[str] = []
    token: str | None = None
    while True:
        page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        keys += [str(o["Key"]) for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return keys


def classify_error(exc: BaseException, bucket: str, endpoint: str | None) -> str:
    """An S3 error in words (:func:`supercheck_runner.storage.classify`)."""
    return classify(exc, bucket=bucket, endpoint=endpoint).text


def preflight(client: S3Client, bucket: str, endpoint: str | None = None) -> StorageProblem | None:
    """Before the test runs: None when the bucket answers, else what is wrong with it.

    Raises :class:`S3Unavailable` for a misconfiguration (no such bucket, access denied...):
    running a test whose results can never be kept wastes the attempt. An outage (refused,
    timed out, 5xx) is *returned*: the caller runs the test anyway and uploads within the window."""
    return _checked(lambda: client.head_bucket(Bucket=bucket), bucket, endpoint)


def _checked(request: Callable[[], object], bucket: str, endpoint: str | None) -> StorageProblem | None:
    """Make the preflight ``request``: None when it worked, an outage returned, anything else raised."""
    try:
        request()
        return None
    except Exception as exc:  # every error is classified; a bug of ours still shows in the text
        problem = classify(exc, bucket=bucket, endpoint=endpoint)
        if problem.kind != Kind.OUTAGE:
            raise S3Unavailable(problem) from exc
        return problem


def preflight_post(client: S3Client, bucket: str, key: str, body: bytes,
                   endpoint: str | None = None) -> StorageProblem | None:
    """Before the test runs, with a grant: POST ``body`` as ``key`` (the first lines of the run's
    console.log, which the whole log replaces after the test, so no object exists only for the
    check). It proves what the uploads need — the endpoint, the bucket, the policy's signature and
    expiry — before the attempt's time is spent. Raises :class:`S3Unavailable` when S3 refuses or is
    misconfigured; returns an outage (the test runs anyway)."""
    return _checked(lambda: client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type(key)),
                    bucket, endpoint)


class Uploader:
    """Uploads planned files, and ``result.json``, retrying through S3 outages until ``give_up_at``
    (``time.monotonic()``; None: one round, no waiting) or until ``stopped()`` says to stop (SIGTERM:
    the pod is going away; ``sleep`` should then return early too)."""

    def __init__(self, client: S3Client, bucket: str, *, endpoint: str | None = None, concurrency: int = 16,
                 give_up_at: float | None = None, backoff: Backoff | None = None,
                 multipart_threshold: int = 8 * MiB, multipart_chunksize: int = 8 * MiB,
                 on_wait: Callable[[Waiting], None] | None = None,
                 on_back: Callable[[int, int], None] | None = None,
                 stopped: Callable[[], bool] = lambda: False,
                 sleep: Callable[[float], object] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.bucket = bucket
        self.endpoint = endpoint
        self.concurrency = max(1, concurrency)
        self.give_up_at = give_up_at
        self.backoff = backoff or Backoff()
        self.on_wait = on_wait or (lambda waiting: None)
        self.on_back = on_back or (lambda left, total: None)
        self.stopped = stopped
        self.sleep = sleep
        self.clock = clock
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self._transfer: TransferConfig | None = None

    @property
    def transfer(self) -> TransferConfig:
        """boto3's transfer settings for a multipart upload, made (and boto3 imported) at the first one."""
        if self._transfer is None:
            from boto3.s3.transfer import TransferConfig

            self._transfer = TransferConfig(
                multipart_threshold=self.multipart_threshold,
                multipart_chunksize=self.multipart_chunksize,
                max_concurrency=4,  # parts of one file in parallel; files are parallel already
                use_threads=True,
            )
        return self._transfer

    def classify(self, exc: BaseException) -> StorageProblem:
        return classify(exc, bucket=self.bucket, endpoint=self.endpoint)

    def _wait(self, problem: StorageProblem, what: str, retry: int) -> float | None:
        """Wait before the next try; None when the window is over (give up)."""
        now = self.clock()
        if self.give_up_at is None or now >= self.give_up_at or self.stopped():
            return None
        delay = min(self.backoff.delay(retry), self.give_up_at - now)
        self.on_wait(Waiting(problem, what, self.give_up_at, delay))
        self.sleep(delay)
        return None if self.stopped() else self.clock() - now

    def upload_file(self, item: PlannedUpload) -> None:
        """One try (botocore's own quick retries included)."""
        if item.size < self.multipart_threshold:
            # One request; the transfer manager's thread pool would cost more than the upload.
            with open(item.path, "rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=item.key, Body=body, ContentType=item.content_type)
        else:
            self.client.upload_file(
                str(item.path), self.bucket, item.key,
                ExtraArgs={"ContentType": item.content_type}, Config=self.transfer,
            )

    def _round(self, items: list[PlannedUpload], report: UploadReport) -> dict[PlannedUpload, BaseException]:
        """Every item once, in parallel; the failures."""
        failures: dict[PlannedUpload, BaseException] = {}
        if not items:
            return failures
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            futures = {pool.submit(self.upload_file, item): item for item in items}
            for future in as_completed(futures):
                item = futures[future]
                try:
                    future.result()
                    report.uploaded.append(item.key)
                    report.bytes += item.size
                except Exception as exc:  # noqa: BLE001 - classified, retried or reported per file
                    failures[item] = exc
        return failures

    def upload_all(self, items: list[PlannedUpload]) -> UploadReport:
        """Everything once; then, while files are left and the window is open: wait, try the
        smallest one, and once it lands the rest. Unreadable files are not retried."""
        report = UploadReport()
        started = time.monotonic()
        failures = latest = self._round(items, report)
        retry = 0
        while failures:
            problems = {item: self.classify(exc) for item, exc in failures.items()}
            for item, problem in problems.items():
                if problem.kind in FINAL_KINDS:
                    report.failed[item.key] = problem.text
                    if problem.kind == Kind.REFUSED:
                        report.problem = problem
            pending = [item for item in items if item in failures and problems[item].kind not in FINAL_KINDS]
            if not pending:
                break
            # What S3 said last (the probe's error once rounds are probes), for the progress line.
            report.problem = next((problems[i] for i in latest if problems[i].kind not in FINAL_KINDS),
                                  problems[pending[0]])
            waited = self._wait(report.problem, f"{len(pending)} of {len(items)} files", retry)
            if waited is None:
                report.stopped = self.stopped()
                for item in pending:
                    report.failed[item.key] = problems[item].text
                break
            report.waited += waited
            retry += 1
            probe = min(pending, key=lambda u: (u.size, u.key))
            latest = self._round([probe], report)
            if latest:
                failures = {item: failures[item] for item in pending} | latest
                continue
            rest = [item for item in pending if item is not probe]
            if rest:
                self.on_back(len(rest), len(items))
            failures = latest = self._round(rest, report)
        report.seconds = time.monotonic() - started
        return report

    def put_result(self, prefix: str, body: str) -> str:
        """``result.json``, after everything else: tried once, then again while the window is open.
        Raises the last error when it could not be put."""
        key = object_key(prefix, RESULT_JSON_NAME)
        data = body.encode()
        retry = 0
        while True:
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")
                return key
            except (BotoCoreError, ClientError) as exc:
                problem = self.classify(exc)
                if problem.kind in FINAL_KINDS or self._wait(problem, RESULT_JSON_NAME, retry) is None:
                    raise
                retry += 1

