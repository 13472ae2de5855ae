"""What an S3 error means for the run: an outage to wait out, or a misconfiguration to report.

* **outage** — connection refused or reset, timeouts, a host name that does not resolve *for
  now* (``EAI_AGAIN``), 5xx, throttling (429, ``SlowDown``): storage is expected back. Before the
  test, the runner runs it anyway; while uploading, it retries until the upload window ends.
* **misconfigured** — no such bucket, access denied, bad credentials, a wrong region, a host
  name that does not exist, an endpoint URL that is not one, TLS that does not verify: waiting
  changes nothing, so before the test the runner fails fast with a message that says what to fix.
* **local** — a file of the out directory could not be read: retrying does not help either.
* **refused** — S3 refused what the pod's upload grant allows (:mod:`.grant`): the presigned
  policy expired, or does not cover the key or the size. The operator minted the grant for this
  attempt alone; no retry can change its answer, so the file is not retried.

Pure: :func:`classify` looks at an exception (and the exceptions it wraps), nothing else.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)

CREDENTIALS_HINT = ("check the S3 credentials the runner uses (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) "
                    "and the bucket's policy")
GRANT_HINT = ("the upload grant the operator minted for this pod expired or does not allow it; check the "
              "operator's S3 credentials (it signs the grants with them), the bucket's policy and the clocks")
# The operations of a grant (supercheck_runner.grant): a presigned POST and a presigned GET.
GRANT_OPERATIONS = frozenset({"PostObject", "PresignedGetObject"})
THROTTLING_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                    "TooManyRequests", "ServiceUnavailable", "InternalError", "RequestTimeout"}
# A name that does not exist (as opposed to a resolver that cannot answer right now).
_NO_SUCH_HOST = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)}


class Kind(enum.Enum):
    OUTAGE = "outage"
    MISCONFIGURED = "misconfigured"
    LOCAL = "local"
    REFUSED = "refused"


@dataclass(frozen=True)
class StorageProblem:
    kind: Kind
    text: str  # what happened, and for a misconfiguration what to fix

    @property
    def transient(self) -> bool:
        return self.kind == Kind.OUTAGE


def where(endpoint: str | None) -> str:
    return f"S3 at {endpoint}" if endpoint else "S3 (AWS)"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        wrapped = getattr(current, "kwargs", {}).get("error") if isinstance(current, BotoCoreError) else None
        current = wrapped if isinstance(wrapped, BaseException) else (current.__cause__ or current.__context__)
    return seen


def _client_error(exc: ClientError, bucket: str, at: str) -> StorageProblem:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or (code if code.isdigit() else 0))
    said = f"{status} {code}".strip() if code != str(status) else str(status)
    if status >= 500 or status == 429 or code in THROTTLING_CODES:
        return StorageProblem(Kind.OUTAGE, f"{at} answered {said}")
    if exc.operation_name in GRANT_OPERATIONS and status in (400, 403) and code != "NoSuchBucket":
        detail = str(error.get("Message") or "").strip()
        return StorageProblem(Kind.REFUSED, f"{at} refused the upload grant ({said}"
                                            + (f": {detail}" if detail else "") + f"): {GRANT_HINT}")
    if status == 404 or code == "NoSuchBucket":
        return StorageProblem(Kind.MISCONFIGURED,
                              f"{at} has no bucket '{bucket}' ({said}): create it, or point the "
                              "operator's S3_ENDPOINT_URL at the S3 that has it")
    if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"):
        return StorageProblem(Kind.MISCONFIGURED,
                              f"{at} denied access to bucket '{bucket}' ({said}): {CREDENTIALS_HINT}")
    if status in (301, 307, 400) or code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
        return StorageProblem(Kind.MISCONFIGURED,
                              f"{at} refused the request for bucket '{bucket}' ({said}): check the operator's "
                              "AWS_REGION and S3_ENDPOINT_URL for this bucket")
    return StorageProblem(Kind.MISCONFIGURED, f"{at} refused the request for bucket '{bucket}' ({said}: {exc})")


def classify(exc: BaseException, *, bucket: str, endpoint: str | None) -> StorageProblem:
    """What ``exc``, raised by an S3 call on ``bucket``, means (see the module's docstring)."""
    at = where(endpoint)
    if isinstance(exc, ClientError):
        return _client_error(exc, bucket, at)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return StorageProblem(Kind.MISCONFIGURED, f"no usable S3 credentials ({exc}): {CREDENTIALS_HINT}")
    if isinstance(exc, SSLError):
        return StorageProblem(Kind.MISCONFIGURED,
                              f"TLS to {at} failed ({exc}): check the operator's S3_ENDPOINT_URL (its scheme) "
                              "and the server's certificate")
    chain = _chain(exc)
    for inner in chain:
        if isinstance(inner, socket.gaierror):
            host = urlsplit(endpoint or "").hostname or "the S3 host"
            if inner.errno in _NO_SUCH_HOST:
                return StorageProblem(Kind.MISCONFIGURED, f"the S3 host '{host}' does not resolve ({inner.strerror}): "
                                                          "fix the operator's S3_ENDPOINT_URL")
            return StorageProblem(Kind.OUTAGE, f"{at}: the host name does not resolve right now ({inner.strerror})")
    for inner in chain:
        if isinstance(inner, ConnectionRefusedError):
            return StorageProblem(Kind.OUTAGE, f"{at}: connection refused")
        if isinstance(inner, ConnectionResetError):
            return StorageProblem(Kind.OUTAGE, f"{at}: connection reset")
    if isinstance(exc, ConnectTimeoutError):
        return StorageProblem(Kind.OUTAGE, f"{at}: connect timed out")
    if isinstance(exc, ReadTimeoutError):
        return StorageProblem(Kind.OUTAGE, f"{at}: no answer in time (read timed out)")
    if isinstance(exc, (BotoCoreError, ConnectionError, TimeoutError)):
        # EndpointConnectionError, ConnectionClosedError and friends: the network between us and S3.
        detail = str(exc) if not isinstance(exc, EndpointConnectionError) else "could not connect"
        return StorageProblem(Kind.OUTAGE, f"{at}: {detail}")
    if isinstance(exc, OSError):
        return StorageProblem(Kind.LOCAL, f"could not read the file: {exc}")
    return StorageProblem(Kind.OUTAGE, f"{at}: {type(exc).__name__}: {exc}")
