"""``supercheck report``: the run's HTML report from S3, the whole folder, with the user's credentials.

A Playwright report is ``index.html`` plus its assets (``data/`` with traces and screenshots, the
trace viewer under ``trace/``): a link to ``index.html`` alone loads the page, but each asset is
another object that needs its own signature, so the trace viewer gets 403. Downloading every object
under the report's folder makes a copy that works offline; ``--link`` presigns ``index.html`` for
a quick look at the summary.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from supercheck.cli.view import EXIT_ERROR


class ReportError(Exception):
    pass


def report_location(body: Mapping[str, Any]) -> tuple[str, str, str]:
    """(bucket, the report's key, the folder to download: the key's folder, with a trailing /)."""
    art = (body.get("status") or {}).get("artifacts") or {}
    name = (body.get("metadata") or {}).get("name", "")
    if not art.get("report"):
        phase = (body.get("status") or {}).get("phase") or "Pending"
        raise ReportError(f"{name} has no HTML report (phase {phase}"
                          f"{'; it has not ended yet' if phase in ('Pending', 'Queued', 'Running') else ''})")
    key = art["report"]
    folder = posixpath.dirname(key)
    return art["bucket"], key, (folder + "/") if folder else ""


def local_path(root: Path, folder: str, key: str) -> Path:
    """Where one object goes: its key below the report's folder, never outside ``root``."""
    rel = PurePosixPath(key[len(folder):])
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ReportError(f"refusing the object key {key!r}: it would land outside {root}")
    return root.joinpath(*rel.parts)


def s3_client() -> Any:
    """boto3 with the user's credentials (AWS_* or any boto3 source), S3_ENDPOINT_URL for a non-AWS S3."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("S3_ENDPOINT_URL") or None
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION") or "us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path" if endpoint else "auto"}))


def keys_under(s3: Any, bucket: str, folder: str) -> Iterable[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        for obj in page.get("Contents", []):
            yield str(obj["Key"])


def download(s3: Any, bucket: str, key: str, folder: str, root: Path) -> tuple[Path, int]:
    """Every object under the report's folder into ``root``; the local index.html and the count."""
    count = 0
    for obj_key in keys_under(s3, bucket, folder):
        if obj_key.endswith("/"):
            continue
        target = local_path(root, folder, obj_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, obj_key, str(target))
        count += 1
    return local_path(root, folder, key), count


def presign(s3: Any, bucket: str, key: str, seconds: int) -> str:
    return str(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds))


def report(body: Mapping[str, Any] | None, name: str, *, directory: str, link: bool, link_seconds: int,
           open_it: bool, out: Any, err: Any, s3: Any = None) -> int:
    if body is None:
        err.write(f"supercheck report: no TestRun or JobRun named {name}\n")
        return EXIT_ERROR
    try:
        bucket, key, folder = report_location(body)
    except ReportError as exc:
        err.write(f"supercheck report: {exc}\n")
        return EXIT_ERROR
    s3 = s3 or s3_client()
    if link:
        out.write(presign(s3, bucket, key, link_seconds) + "\n")
        err.write(f"(valid {link_seconds}s; index.html only: the trace viewer and other assets need the whole "
                  f"folder, which 'supercheck report {name}' downloads)\n")
        return 0
    root = Path(directory) / name
    index, count = download(s3, bucket, key, folder, root)
    if count == 0:
        err.write(f"supercheck report: nothing under s3://{bucket}/{folder}\n")
        return EXIT_ERROR
    out.write(f"{index.resolve()}\n")
    err.write(f"({count} files from s3://{bucket}/{folder})\n")
    if open_it:
        import webbrowser

        webbrowser.open(index.resolve().as_uri())
    return 0
