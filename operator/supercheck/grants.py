"""Per-pod S3 grants: what one runner pod may do in S3, signed by the operator for that pod alone.

A runner pod holds no S3 key. The operator signs, with its own key, an
:class:`~supercheck_contract.UploadGrant`:

* a presigned POST policy (SigV4) that lets the holder create objects whose key starts with
  ``<prefix>/`` in one bucket, each at most ``RUNNER_MAX_ARTIFACT_OBJECT_BYTES``, until ``expires`` (the
  pod's deadline). The policy names every form field the holder may send besides the file:
  ``key`` (under the prefix), ``Content-Type`` (any) and ``acl`` (``private`` only, so an upload
  cannot make itself world-readable); any other ``x-amz-*`` field is refused by S3;
* a presigned GET for each key in ``reads`` (a JobRun's merge pod reads its shards' blob reports),
  valid for that one object until the same time.

The POST policy's signature authorises only a POST whose form matches that policy: it is an HMAC
of the policy document, so it signs no other request (a GET, a LIST, another policy). Neither the
secret key nor a key derived from it is in the grant; only the access key id (in
``x-amz-credential``), which is not a secret.

Pure: botocore signs locally; minting makes no network request, so the operator needs no route to
S3 for it. The signing client is built once per configuration (building one reads botocore's
service model, tens of milliseconds) and is safe to share between threads.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from supercheck.config import Settings
from supercheck_contract import PresignedRead, UploadGrant

# SigV4 presigned URLs are valid at most 7 days (AWS refuses longer; botocore does not check).
PRESIGNED_URL_MAX_SECONDS = 7 * 24 * 3600
# The only canned ACL a grant's holder may ask for: an upload must not make itself public.
PRIVATE_ACL = "private"


class GrantError(ValueError):
    """A grant cannot be minted: no key to sign with, an expiry in the past, a bad prefix."""


def mint(settings: Settings, bucket: str, prefix: str, expires: datetime,
         reads: Sequence[str] = ()) -> UploadGrant:
    """The grant of one runner pod: POST under ``prefix/`` in ``bucket`` until ``expires``; GET ``reads``.

    ``prefix`` is the pod's artifact prefix without a trailing slash (``artifact_prefix``,
    ``shard_prefix``, ``job_prefix``); the policy allows keys starting with ``prefix + "/"`` only, so
    attempt 1's grant cannot write under ``attempt-10/``. ``expires`` must be timezone-aware and in
    the future; the policy's expiration is ``expires`` to the second (never later), and the grant's
    ``expires`` is the policy's own. Presigned GETs last as long, capped at SigV4's 7 days.
    """
    prefix = _clean_prefix(prefix)
    if not bucket:
        raise GrantError("an upload grant needs a bucket")
    if expires.tzinfo is None:
        raise GrantError("an upload grant's expiry must be timezone-aware (UTC)")
    seconds = math.floor((expires.replace(microsecond=0) - datetime.now(UTC)).total_seconds())
    if seconds < 1:
        raise GrantError(f"an upload grant's expiry {expires.isoformat()} is not in the future")
    client = _signing_client(settings.s3_endpoint_url, settings.aws_access_key_id,
                             settings.aws_secret_access_key, settings.aws_region)
    max_bytes = settings.runner_max_artifact_object_bytes
    post: dict[str, Any] = client.generate_presigned_post(
        Bucket=bucket,
        # botocore turns a key ending in ${filename} into the condition ["starts-with", "$key", prefix/].
        Key=f"{prefix}/${{filename}}",
        Fields={"acl": PRIVATE_ACL},
        Conditions=[
            {"acl": PRIVATE_ACL},
            ["starts-with", "$key", f"{prefix}/"],
            ["starts-with", "$Content-Type", ""],
            ["content-length-range", 0, max_bytes],
        ],
        ExpiresIn=seconds,
    )
    fields = {name: str(value) for name, value in post["fields"].items() if name != "key"}  # the runner sets key
    get_seconds = min(seconds, PRESIGNED_URL_MAX_SECONDS)
    presigned_reads = [
        PresignedRead(key=key, url=client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=get_seconds))
        for key in dict.fromkeys(reads)  # each key once, in the order given
    ]
    return UploadGrant(
        bucket=bucket,
        prefix=prefix,
        url=post["url"],
        fields=fields,
        expires=policy_expiration(fields),
        maxObjectBytes=max_bytes,
        reads=presigned_reads,
    )


def policy_document(fields: dict[str, str]) -> dict[str, Any]:
    """The POST policy a grant's ``fields`` carry (base64 JSON in the ``policy`` field)."""
    document: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return document


def policy_expiration(fields: dict[str, str]) -> str:
    """When the POST policy ends, as the policy says (ISO 8601, UTC, e.g. ``2026-11-28T21:30:00Z``)."""
    return str(policy_document(fields)["expiration"])


def _clean_prefix(prefix: str) -> str:
    cleaned = prefix.strip("/")
    if not cleaned:
        raise GrantError("an upload grant needs a key prefix: an empty one would allow the whole bucket")
    if any(part in ("", ".", "..") for part in cleaned.split("/")):
        raise GrantError(f"an upload grant's prefix must be plain path segments, not {prefix!r}")
    return cleaned


@functools.lru_cache(maxsize=4)
def _signing_client(endpoint_url: str | None, access_key_id: str | None, secret_access_key: str | None,
                    region: str) -> Any:
    """A botocore S3 client that only signs: SigV4, path-style (``<endpoint>/<bucket>``), the operator's key.

    The key comes from the settings only: botocore's own credential chain could reach for the cloud
    metadata service, a network request the minting must not make."""
    if not (access_key_id and secret_access_key):
        raise GrantError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set: the operator signs each "
                         "runner pod's upload grant with them")
    session = boto3.session.Session(aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
                                    region_name=region)
    return session.client(
        "s3",
        endpoint_url=endpoint_url or None,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
