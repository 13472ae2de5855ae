"""S3 through the pod's upload grant: no key in the pod, only what the operator allowed this attempt.

The operator mints a :class:`supercheck_contract.UploadGrant` for each runner pod and mounts it
(the file named by ``UPLOAD_GRANT_ENV``): a presigned POST policy for keys under the attempt's
prefix, each at most ``maxObjectBytes``, until ``expires``; and presigned GETs for exactly the
objects the pod must read (a job's merge pod: its shards' blob reports). :class:`GrantClient`
speaks those two requests with urllib3 (which botocore brings along) and offers the calls of
:class:`supercheck_runner.artifacts.S3Client` the runner makes, so the uploader, its parallelism,
retries, outage handling and announcements are the same with a grant as with a key.

Errors are raised as botocore's, so :mod:`supercheck_runner.storage` classes them as it does the
SDK's: a connection refused or a 5xx is an outage (retried within the upload window); a 400/403 to
a grant's request is *refused* (expired, outside the prefix, too large): never retried.

A POST carries one object whole (S3 has no multipart form of it): a file is streamed from disk,
never read into memory, and a file larger than the grant allows is not sent at all.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import urllib3
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from urllib3.exceptions import ConnectTimeoutError as Urllib3ConnectTimeout
from urllib3.exceptions import HTTPError, ProtocolError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

from supercheck_contract import UPLOAD_GRANT_ENV, UploadGrant

CHUNK = 1024 * 1024
QUICK_RETRY_SECONDS = 0.2  # between a request's own quick tries (the uploader's backoff comes after)
_ERROR_FIELD = re.compile(r"<(?P<tag>Code|Message)>(?P<text>[^<]*)</(?P=tag)>")


class GrantError(Exception):
    """The grant file named by UPLOAD_GRANT_ENV cannot be used (missing, unreadable, not a grant)."""


def load(environ: Mapping[str, str] | None = None) -> UploadGrant | None:
    """The pod's grant, or None when the runner has none (standalone, with a key of its own)."""
    env = os.environ if environ is None else environ
    path = env.get(UPLOAD_GRANT_ENV, "").strip()
    if not path:
        return None
    try:
        return UploadGrant.model_validate_json(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise GrantError(f"the upload grant {path} ({UPLOAD_GRANT_ENV}) cannot be used: {exc}") from exc


def endpoint(grant: UploadGrant) -> str:
    """Where the grant's requests go (scheme, host and port), for messages."""
    parts = urlsplit(grant.url)
    return f"{parts.scheme}://{parts.netloc}"


def _error(status: int, body: bytes, operation: str, key: str) -> ClientError:
    """An S3 error response as botocore's ClientError (code and message from its XML, when any)."""
    found = {m["tag"]: m["text"] for m in _ERROR_FIELD.finditer(body[:8192].decode("utf-8", "replace"))}
    code = found.get("Code") or str(status)
    message = found.get("Message") or body[:200].decode("utf-8", "replace").strip()
    return ClientError({"Error": {"Code": code, "Message": f"{message} (key {key})"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class _Form:
    """A multipart/form-data body read piece by piece: the fields, then the file from disk, so
    urllib3 sends it with a Content-Length and never holds the file in memory."""

    def __init__(self, fields: Mapping[str, str], filename: str, content_type: str, body: IO[bytes] | bytes,
                 size: int):
        # S3 reads the fields before the file and ignores any after it: the file goes last.
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items())
        head += (f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: {content_type}\r\n\r\n").encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.head = head
        self.body = body
        self.length = len(head) + size + len(self.tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def chunks(self) -> Iterator[bytes]:
        yield self.head
        if isinstance(self.body, bytes):
            yield self.body
        else:
            yield from iter(lambda: self.body.read(CHUNK), b"")  # type: ignore[union-attr]
        yield self.tail


class GrantClient:
    """The S3 calls the runner makes (:class:`supercheck_runner.artifacts.S3Client`), through a grant.

    ``put_object`` and ``upload_file`` POST under the grant's prefix; ``list_objects_v2`` lists the
    objects the grant may read under a prefix (the grant cannot list S3, and needs not: its reads
    are the objects the pod is to read); ``download_file`` GETs one of them. Each request is tried
    ``attempts`` times quickly on an outage before the error goes to the uploader's own retries."""

    def __init__(self, grant: UploadGrant, *, pool: int = 32, connect_timeout: float = 10.0,
                 read_timeout: float = 60.0, attempts: int = 3, sleep: Callable[[float], object] = time.sleep):
        self.grant = grant
        self.attempts = max(1, attempts)
        self.sleep = sleep
        self.http = urllib3.PoolManager(maxsize=pool, retries=False,
                                        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout))
        self.reads = {r.key: r.url for r in grant.reads}

    # --- requests
    def _request(self, method: str, url: str, operation: str, key: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """One request, its quick retries on an outage; an S3 error answer raises ClientError,
        the network's as botocore's connection errors (what storage.classify reads)."""
        body_factory: Callable[[], dict[str, Any]] = kwargs.pop("body_factory", dict)
        for attempt in range(1, self.attempts + 1):
            try:
                resp = self.http.request(method, url, preload_content=False, redirect=False,
                                         **kwargs, **body_factory())
            except Urllib3ConnectTimeout as exc:
                error: Exception = ConnectTimeoutError(endpoint_url=endpoint(self.grant), error=exc)
            except Urllib3ReadTimeout as exc:
                error = ReadTimeoutError(endpoint_url=endpoint(self.grant), error=exc)
            except (HTTPError, ProtocolError, OSError) as exc:
                error = EndpointConnectionError(endpoint_url=endpoint(self.grant), error=exc)
                error.__cause__ = exc
            else:
                if resp.status < 300:
                    return resp
                body = resp.read()
                resp.release_conn()
                error = _error(resp.status, body, operation, key)
                if resp.status < 500 and resp.status != 429:
                    raise error
            if attempt == self.attempts:
                raise error
            self.sleep(QUICK_RETRY_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _refuse_outside(self, key: str) -> None:
        head = self.grant.prefix.strip("/") + "/"
        if not key.startswith(head):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": f"{key} is not under the grant's "
                                                                            f"prefix {head}"},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, "PostObject")

    def post(self, key: str, open_body: Callable[[], IO[bytes] | bytes], size: int, content_type: str) -> None:
        """POST one object under the grant's prefix; ``open_body`` gives the content afresh for each try."""
        self._refuse_outside(key)
        if size > self.grant.maxObjectBytes:
            raise ClientError({"Error": {"Code": "EntityTooLarge",
                                         "Message": f"{size} bytes, the grant allows {self.grant.maxObjectBytes}"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "PostObject")
        fields = {**self.grant.fields, "key": key, "Content-Type": content_type}

        def body() -> dict[str, Any]:
            form = _Form(fields, "upload", content_type, open_body(), size)  # the key field names it
            return {"body": form.chunks(), "headers": {"Content-Type": form.content_type,
                                                       "Content-Length": str(form.length)}}

        resp = self._request("POST", self.grant.url, "PostObject", key, body_factory=body)
        resp.drain_conn()
        resp.release_conn()

    # --- the calls of artifacts.S3Client
    def head_bucket(self, *, Bucket: str) -> Mapping[str, Any]:
        """A grant cannot ask about the bucket; the runner's preflight with a grant is a POST
        (:func:`supercheck_runner.artifacts.preflight_post`)."""
        return {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes | IO[bytes],
                   ContentType: str) -> Mapping[str, Any]:
        if isinstance(Body, bytes):
            data = Body
            self.post(Key, lambda: data, len(data), ContentType)
        else:
            name = getattr(Body, "name", None)
            if not isinstance(name, str):
                data = Body.read()
                self.post(Key, lambda: data, len(data), ContentType)
            else:
                files: list[IO[bytes]] = []

                def reopen() -> IO[bytes]:
                    files.append(open(name, "rb"))
                    return files[-1]
                try:
                    self.post(Key, reopen, os.path.getsize(name), ContentType)
                finally:
                    for f in files:
                        f.close()
        return {}

    def upload_file(self, Filename: str, Bucket: str, Key: str,
                    ExtraArgs: Mapping[str, str] | None = None, Callback: Callable[[int], None] | None = None,
                    Config: Any = None) -> None:
        with open(Filename, "rb") as f:
            self.put_object(Bucket=Bucket, Key=Key, Body=f,
                            ContentType=(ExtraArgs or {}).get("ContentType", "application/octet-stream"))

    def list_objects_v2(self, **kwargs: str) -> Mapping[str, Any]:
        prefix = kwargs.get("Prefix", "")
        return {"Contents": [{"Key": k} for k in sorted(self.reads) if k.startswith(prefix)], "IsTruncated": False}

    def download_file(self, Bucket: str, Key: str, Filename: str) -> None:
        url = self.reads.get(Key)
        if url is None:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": f"the grant does not allow reading {Key}"},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, "PresignedGetObject")
        resp = self._request("GET", url, "PresignedGetObject", Key)
        try:
            with open(Filename, "wb") as f:
                for chunk in resp.stream(CHUNK):
                    f.write(chunk)
        finally:
            resp.release_conn()
