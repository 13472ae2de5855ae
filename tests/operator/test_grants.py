"""Minting a runner pod's upload grant: what the signed POST policy allows, that the operator's key
signs it without leaving the operator, and that minting needs no network. Whether an S3 server
enforces the grant: tests/security/test_s3_grants.py."""

from __future__ import annotations

import hashlib
import hmac
import socket
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from supercheck import grants
from supercheck.config import Settings
from supercheck.grants import GrantError, mint, policy_document

KEY_ID, SECRET = "operator-key", "operator-secret-never-in-a-pod"
PREFIX = "team-a/checkout/0f9c/attempt-1"


def settings(**extra: object) -> Settings:
    base: dict[str, object] = dict(S3_ENDPOINT_URL="http://s3.example:9000", AWS_ACCESS_KEY_ID=KEY_ID,
                                   AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="eu-west-1")
    return Settings(**{**base, **extra})


def in_minutes(n: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=n)


def conditions(grant) -> list:
    return policy_document(grant.fields)["conditions"]


def test_the_policy_allows_one_bucket_keys_under_the_prefix_any_content_type_and_the_size_cap():
    grant = mint(settings(RUNNER_MAX_ARTIFACT_OBJECT_BYTES=1000), "playwright-test-artifacts", PREFIX, in_minutes(10))
    conds = conditions(grant)
    assert {"bucket": "playwright-test-artifacts"} in conds
    assert ["starts-with", "$key", PREFIX + "/"] in conds
    assert ["starts-with", "$Content-Type", ""] in conds
    assert ["content-length-range", 0, 1000] in conds
    assert {"acl": "private"} in conds and grant.fields["acl"] == "private"
    # No other key condition: none that names one exact key, none that widens the prefix.
    key_conds = [c for c in conds if (isinstance(c, dict) and "key" in c) or (isinstance(c, list) and c[1] == "$key")]
    assert all(c[2] == PREFIX + "/" for c in key_conds)
    assert grant.maxObjectBytes == 1000 and grant.bucket == "playwright-test-artifacts" and grant.prefix == PREFIX


def test_a_prefix_without_its_slash_cannot_reach_a_sibling_attempt():
    # attempt-1's grant must not cover attempt-10/: the condition carries the trailing slash.
    grant = mint(settings(), "b", PREFIX + "/", in_minutes(10))
    assert grant.prefix == PREFIX
    starts = [c[2] for c in conditions(grant) if isinstance(c, list) and c[1] == "$key"]
    assert starts and all(s == PREFIX + "/" for s in starts)
    assert not (PREFIX + "0/report/index.html").startswith(starts[0])


def test_the_runner_sets_the_key_and_every_signing_field_is_there():
    grant = mint(settings(), "b", PREFIX, in_minutes(10))
    assert "key" not in grant.fields
    assert set(grant.fields) == {"acl", "policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date",
                                 "x-amz-signature"}
    assert grant.fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    assert grant.fields["x-amz-credential"].startswith(f"{KEY_ID}/") and "/eu-west-1/s3/aws4_request" in \
        grant.fields["x-amz-credential"]


def test_the_url_is_the_endpoint_path_style():
    grant = mint(settings(), "k6-performance-artifacts", PREFIX, in_minutes(10))
    assert grant.url == "http://s3.example:9000/k6-performance-artifacts"


def test_the_signature_is_the_operators_key_over_the_policy_and_the_secret_is_nowhere():
    grant = mint(settings(), "b", PREFIX, in_minutes(10), reads=["team-a/checkout/0f9c/shard-1/attempt-1/blob/x.zip"])
    date = grant.fields["x-amz-credential"].split("/")[1]
    key = ("AWS4" + SECRET).encode()
    for part in (date, "eu-west-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, grant.fields["policy"].encode(), hashlib.sha256).hexdigest()
    assert grant.fields["x-amz-signature"] == expected
    assert SECRET not in grant.model_dump_json()


def test_the_policy_ends_at_the_expiry_to_the_second_never_later():
    expires = (datetime.now(UTC) + timedelta(minutes=17)).replace(microsecond=999_000)
    grant = mint(settings(), "b", PREFIX, expires)
    ends = datetime.strptime(grant.expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert grant.expires == policy_document(grant.fields)["expiration"]
    assert expires - timedelta(seconds=2) <= ends <= expires


def test_reads_are_presigned_gets_of_exactly_those_keys_each_once():
    keys = ["ns/job/uid/shard-1/attempt-1/blob/report-1.zip", "ns/job/uid/shard-2/attempt-2/blob/report-2.zip"]
    grant = mint(settings(), "playwright-job-artifacts", "ns/job/uid", in_minutes(30), reads=keys + keys[:1])
    assert [r.key for r in grant.reads] == keys
    for read in grant.reads:
        url = urlsplit(read.url)
        query = parse_qs(url.query)
        assert f"{url.scheme}://{url.netloc}" == "http://s3.example:9000"
        assert url.path == f"/playwright-job-artifacts/{read.key}"
        assert query["X-Amz-Credential"][0].startswith(f"{KEY_ID}/")
        assert 29 * 60 <= int(query["X-Amz-Expires"][0]) <= 30 * 60
        assert query["X-Amz-Signature"]


def test_a_presigned_get_lasts_at_most_sigv4s_seven_days():
    grant = mint(settings(), "b", PREFIX, datetime.now(UTC) + timedelta(days=9), reads=["x"])
    assert int(parse_qs(urlsplit(grant.reads[0].url).query)["X-Amz-Expires"][0]) == 7 * 24 * 3600


def test_minting_makes_no_network_request(monkeypatch):
    grants._signing_client.cache_clear()

    def refuse(*args, **kwargs):
        raise AssertionError("minting a grant opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    grant = mint(settings(S3_ENDPOINT_URL=None), "b", PREFIX, in_minutes(5), reads=["x/y"])
    assert grant.url.endswith("/b") and grant.reads[0].key == "x/y"


@pytest.mark.parametrize("key_id, secret", [(None, SECRET), (KEY_ID, None), ("", "")])
def test_without_the_operators_key_there_is_no_grant(key_id, secret):
    with pytest.raises(GrantError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        mint(settings(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret), "b", PREFIX, in_minutes(5))


@pytest.mark.parametrize("prefix", ["", "/", "a/../b", "a//b", "./a"])
def test_a_prefix_must_be_plain_segments(prefix):
    with pytest.raises(GrantError, match="prefix"):
        mint(settings(), "b", prefix, in_minutes(5))


def test_the_expiry_must_be_aware_and_in_the_future():
    with pytest.raises(GrantError, match="timezone-aware"):
        mint(settings(), "b", PREFIX, datetime.now() + timedelta(minutes=5))  # naive: refused
    with pytest.raises(GrantError, match="not in the future"):
        mint(settings(), "b", PREFIX, datetime.now(UTC) - timedelta(seconds=1))


def test_the_max_object_size_defaults_to_100_mib_and_stays_within_one_post():
    assert Settings().runner_max_artifact_object_bytes == 100 * 1024 * 1024
    assert Settings(RUNNER_MAX_ARTIFACT_OBJECT_BYTES="1048576").runner_max_artifact_object_bytes == 1024 * 1024
    for bad in ("0", str(5 * 1024**3 + 1)):
        with pytest.raises(ValidationError):
            Settings(RUNNER_MAX_ARTIFACT_OBJECT_BYTES=bad)

