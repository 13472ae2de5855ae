"""Upload grants: what one runner pod may do in S3, signed by the operator with its own key.

STAND-IN: the s3-grants branch owns this module (and the local S3 server that checks policies);
this minimal version, with the same signature, lets the s3-runner branch wire and test the pods.
The lead keeps one at merge.

A grant is a presigned POST policy (keys under ``prefix``, each at most ``maxObjectBytes``, until
``expires``) and presigned GETs for exactly ``reads``. Nothing is sent to S3 to mint one: boto3
signs locally, so minting costs no request and works while S3 is away.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from supercheck.config import Settings
from supercheck_contract import PresignedRead, UploadGrant


def _client(settings: Settings) -> Any:
    return boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region,
        aws_access_key_id=settings.aws_access_key_id, aws_secret_access_key=settings.aws_secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def mint(settings: Settings, bucket: str, prefix: str, expires: datetime, reads: Sequence[str] = ()) -> UploadGrant:
    """A grant for keys under ``prefix`` until ``expires`` (an aware datetime), reading ``reads``."""
    client = _client(settings)
    head = prefix.strip("/") + "/"
    seconds = max(1, int((expires - datetime.now(UTC)).total_seconds()))
    max_bytes = settings.runner_max_artifact_object_bytes
    post = client.generate_presigned_post(
        Bucket=bucket, Key=head + "${filename}",
        Conditions=[["starts-with", "$key", head], ["starts-with", "$Content-Type", ""],
                    ["content-length-range", 0, max_bytes]],
        ExpiresIn=seconds,
    )
    fields = {k: str(v) for k, v in post["fields"].items() if k != "key"}
    return UploadGrant(
        bucket=bucket, prefix=head.rstrip("/"), url=post["url"], fields=fields,
        expires=expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), maxObjectBytes=max_bytes,
        reads=[PresignedRead(key=k, url=client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=seconds)) for k in reads],
    )
