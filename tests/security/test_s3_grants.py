"""Artifacts of other runs: a runner pod's upload grant lets it write under its own prefix and nothing
else (issue 10, item 1).

The attack it answers: every runner pod held the one global S3 key, so a script in namespace A read it
from the runner's environment and overwrote namespace B's report. Now a pod holds only the grant the
operator minted for it (operator/supercheck/grants.py, the real ``mint``), and these tests throw at a
real S3 server that checks signatures and POST policies (SeaweedFS, tests/s3_kit.py) what a script
holding run A's grant could try. Each request is made by hand, as a hostile script would, not through
the runner's uploader.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
import urllib3
from botocore.exceptions import ClientError

from supercheck.config import Settings
from supercheck.grants import mint, policy_document
from supercheck_contract import UploadGrant
from tests.s3_kit import throwaway_s3

pytestmark = pytest.mark.integration

BUCKET = "playwright-test-artifacts"
OTHER_BUCKET = "k6-performance-artifacts"
PREFIX_A = "team-a/checkout/uid-a/attempt-1"
PREFIX_B = "team-b/checkout/uid-b/attempt-1"
VICTIM = f"{PREFIX_B}/report/index.html"  # run B's report, written by B's pod before A's script runs
VICTIM_BODY = b"<html>run B's own report</html>"
MAX_BYTES = 64 * 1024
http = urllib3.PoolManager(retries=False, timeout=30)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with throwaway_s3(tmp_path_factory.mktemp("seaweedfs"), buckets=[BUCKET, OTHER_BUCKET]) as server:
        yield server


@pytest.fixture(scope="module")
def settings(s3) -> Settings:
    return Settings(S3_ENDPOINT_URL=s3.endpoint, AWS_ACCESS_KEY_ID=s3.admin.access_key,
                    AWS_SECRET_ACCESS_KEY=s3.admin.secret_key, AWS_REGION="us-east-1",
                    RUNNER_MAX_ARTIFACT_OBJECT_BYTES=str(MAX_BYTES))


@pytest.fixture
def victim(s3):
    """Run B's report as B's pod left it; each test checks it is still exactly that."""
    admin = s3.client()
    admin.put_object(Bucket=BUCKET, Key=VICTIM, Body=VICTIM_BODY, ContentType="text/html")
    yield
    assert admin.get_object(Bucket=BUCKET, Key=VICTIM)["Body"].read() == VICTIM_BODY, "run B's report changed"


def grant_a(settings: Settings, minutes: float = 10, reads=()) -> UploadGrant:
    return mint(settings, BUCKET, PREFIX_A, datetime.now(UTC) + timedelta(minutes=minutes), reads=reads)


def post(grant: UploadGrant, key: str, body: bytes = b"<html>A</html>", content_type: str = "text/html",
         url: str | None = None, **fields: str) -> urllib3.BaseHTTPResponse:
    """A POST upload as the runner makes it: the grant's fields, the key, Content-Type, the file last."""
    form: dict = {**grant.fields, **fields, "key": key, "Content-Type": content_type}
    form["file"] = ("upload", body, content_type)
    return http.request("POST", url or grant.url, fields=form)


def stored(s3, key: str, bucket: str = BUCKET) -> bytes | None:
    try:
        return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise


def test_a_grant_posts_under_its_own_prefix(s3, settings):
    grant = grant_a(settings)
    res = post(grant, f"{PREFIX_A}/report/index.html", b"<html>run A</html>")
    assert res.status == 204, res.data
    assert stored(s3, f"{PREFIX_A}/report/index.html") == b"<html>run A</html>"
    head = s3.client().head_object(Bucket=BUCKET, Key=f"{PREFIX_A}/report/index.html")
    assert head["ContentType"] == "text/html"
    # A nested path and any content type: what the runner's artifacts are.
    res = post(grant, f"{PREFIX_A}/trace/test-1/trace.zip", b"PK\x03\x04", content_type="application/zip")
    assert res.status == 204, res.data


def test_the_region_the_operator_signs_for_is_the_one_checked(s3, settings):
    # AWS_REGION is part of the signature's scope: any region signs, and the server checks the one named.
    grant = mint(settings.model_copy(update={"aws_region": "eu-west-1"}), BUCKET, PREFIX_A,
                 datetime.now(UTC) + timedelta(minutes=5))
    assert "/eu-west-1/s3/" in grant.fields["x-amz-credential"]
    assert post(grant, f"{PREFIX_A}/region.html").status == 204
    other_scope = grant.fields["x-amz-credential"].replace("/eu-west-1/", "/us-east-1/")
    assert post(grant, f"{PREFIX_A}/region2.html", **{"x-amz-credential": other_scope}).status == 403


def test_a_grant_cannot_post_under_another_runs_prefix(s3, settings, victim):
    res = post(grant_a(settings), VICTIM, b"<html>defaced by A</html>")
    assert res.status == 403, res.data


@pytest.mark.parametrize("key", [
    f"{PREFIX_A}/../../../../{VICTIM}",                     # climbs out of the prefix
    f"{PREFIX_A}\\..\\..\\..\\..\\{VICTIM}",                 # with backslashes (SeaweedFS reads them as /)
    f"/{VICTIM}",                                           # an absolute key
    f"{PREFIX_A}0/report/index.html",                       # attempt-10: a sibling with the same start
    "team-a/checkout/uid-a/attempt-2/report/index.html",     # another attempt of the same run
])
def test_a_key_that_leaves_the_prefix_is_refused(s3, settings, victim, key):
    res = post(grant_a(settings), key, b"<html>defaced by A</html>")
    assert res.status in (400, 403), (res.status, res.data)
    if VICTIM not in key:  # (B's report itself is checked by the fixture)
        assert stored(s3, key) is None


def test_an_escaped_climb_is_only_a_strange_name_under_the_prefix(s3, settings, victim):
    # A form field is not a URL: %2F stays three characters, so the key stays under A's prefix.
    key = f"{PREFIX_A}/..%2F..%2F..%2F..%2F{VICTIM}"
    assert post(grant_a(settings), key, b"<html>defaced by A</html>").status == 204
    assert stored(s3, key) == b"<html>defaced by A</html>"


def test_a_grant_cannot_post_to_another_bucket(s3, settings):
    grant = grant_a(settings)
    other = grant.url.rsplit("/", 1)[0] + "/" + OTHER_BUCKET
    res = post(grant, f"{PREFIX_A}/summary.json", url=other)
    assert res.status == 403, res.data
    assert stored(s3, f"{PREFIX_A}/summary.json", bucket=OTHER_BUCKET) is None


def test_an_expired_grant_is_refused(s3, settings):
    grant = mint(settings, BUCKET, PREFIX_A, datetime.now(UTC) + timedelta(seconds=3))
    time.sleep(max(0.0, (datetime.fromisoformat(grant.expires.replace("Z", "+00:00"))
                         - datetime.now(UTC)).total_seconds()) + 1.5)
    res = post(grant, f"{PREFIX_A}/late.html")
    assert res.status == 403, res.data
    assert stored(s3, f"{PREFIX_A}/late.html") is None


def _with_policy(grant: UploadGrant, change) -> dict[str, str]:
    document = policy_document(grant.fields)
    change(document)
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return {**grant.fields, "policy": encoded}


@pytest.mark.parametrize("what, change", [
    ("the prefix widened to the whole bucket",
     lambda d: [c.__setitem__(2, "") for c in d["conditions"] if isinstance(c, list) and c[1] == "$key"]),
    ("the expiry pushed a year out",
     lambda d: d.__setitem__("expiration", (datetime.now(UTC) + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ"))),
    ("the size cap lifted",
     lambda d: [c.__setitem__(2, 10**12) for c in d["conditions"] if isinstance(c, list) and c[0] ==
                "content-length-range"]),
])
def test_a_tampered_policy_is_refused(s3, settings, victim, what, change):
    grant = grant_a(settings).model_copy()
    grant.fields = _with_policy(grant, change)
    res = post(grant, VICTIM, b"<html>defaced by A</html>")
    assert res.status == 403, (what, res.data)
    res = post(grant, f"{PREFIX_A}/tampered.html")
    assert res.status == 403, (what, res.data)


def test_a_tampered_signature_or_credential_is_refused(s3, settings):
    grant = grant_a(settings)
    sig = grant.fields["x-amz-signature"]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    res = post(grant, f"{PREFIX_A}/a.html", **{"x-amz-signature": flipped})
    assert res.status == 403, res.data
    credential = grant.fields["x-amz-credential"].replace(s3.admin.access_key, "someone-else", 1)
    res = post(grant, f"{PREFIX_A}/a.html", **{"x-amz-credential": credential})
    assert res.status == 403, res.data
    assert stored(s3, f"{PREFIX_A}/a.html") is None


def test_an_object_over_the_size_cap_is_refused(s3, settings):
    grant = grant_a(settings)
    res = post(grant, f"{PREFIX_A}/video.webm", b"\0" * (MAX_BYTES + 1), content_type="video/webm")
    assert 400 <= res.status < 500, res.data
    assert stored(s3, f"{PREFIX_A}/video.webm") is None
    assert post(grant, f"{PREFIX_A}/video.webm", b"\0" * MAX_BYTES, content_type="video/webm").status == 204


def test_an_upload_cannot_make_itself_public_or_add_fields_the_policy_does_not_name(s3, settings):
    grant = grant_a(settings)
    res = post(grant, f"{PREFIX_A}/public.html", acl="public-read")
    assert res.status == 403, res.data
    res = post(grant, f"{PREFIX_A}/meta.html", **{"x-amz-meta-owner": "team-b"})
    assert res.status == 403, res.data
    res = post(grant, f"{PREFIX_A}/redirect.html", **{"x-amz-website-redirect-location": "https://evil.example/"})
    assert res.status == 403, res.data
    for key in ("public.html", "meta.html", "redirect.html"):
        assert stored(s3, f"{PREFIX_A}/{key}") is None


def test_seaweedfs_gap_form_fields_the_policy_does_not_name_other_than_x_amz_are_accepted(s3, settings):
    """Where SeaweedFS is laxer than AWS (docs/security.md): AWS refuses any form field the policy does not
    name; SeaweedFS refuses only unnamed x-amz-* fields and stores Cache-Control, Content-Disposition,
    Content-Encoding and Expires as the object's headers, and accepts an unnamed acl. So the grant names acl
    (private), and the rest only dresses the holder's own objects. Fails when SeaweedFS closes the gap."""
    res = post(grant_a(settings), f"{PREFIX_A}/dressed.html", **{"Content-Disposition": "attachment"})
    assert res.status == 204, res.data
    head = s3.client().head_object(Bucket=BUCKET, Key=f"{PREFIX_A}/dressed.html")
    assert head.get("ContentDisposition") == "attachment"


def _sigv4_query(grant: UploadGrant) -> dict[str, str]:
    """The grant's own signing material, dressed as a presigned GET (the only signature a script has)."""
    return {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": grant.fields["x-amz-credential"],
            "X-Amz-Date": grant.fields["x-amz-date"], "X-Amz-Expires": "600", "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": grant.fields["x-amz-signature"]}


def _sigv4_header(grant: UploadGrant) -> dict[str, str]:
    credential = grant.fields["x-amz-credential"]
    return {"x-amz-date": grant.fields["x-amz-date"], "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
            "Authorization": f"AWS4-HMAC-SHA256 Credential={credential}, "
                             f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                             f"Signature={grant.fields['x-amz-signature']}"}


def test_a_grant_cannot_be_turned_into_a_get_or_a_list(s3, settings, victim):
    grant = grant_a(settings)
    assert post(grant, f"{PREFIX_A}/mine.html", b"<html>A's own</html>").status == 204
    base = s3.endpoint
    targets = {
        "B's report": f"{base}/{BUCKET}/{VICTIM}",
        "A's own object": f"{base}/{BUCKET}/{PREFIX_A}/mine.html",
        "a listing of the bucket": f"{base}/{BUCKET}?list-type=2",
        "a listing of B's prefix": f"{base}/{BUCKET}?list-type=2&prefix=team-b/",
        "the list of buckets": f"{base}/",
    }
    for what, url in targets.items():
        res = http.request("GET", url + ("&" if "?" in url else "?") + urlencode(_sigv4_query(grant)))
        assert res.status == 403, (what, "query", res.status, res.data[:300])
        res = http.request("GET", url, headers=_sigv4_header(grant))
        assert res.status == 403, (what, "header", res.status, res.data[:300])
        assert VICTIM_BODY not in res.data
    # Nor into a write by another verb (PUT, DELETE), which a POST policy does not cover.
    res = http.request("PUT", f"{base}/{BUCKET}/{VICTIM}", body=b"defaced", headers=_sigv4_header(grant))
    assert res.status == 403, res.data
    res = http.request("DELETE", f"{base}/{BUCKET}/{VICTIM}", headers=_sigv4_header(grant))
    assert res.status == 403, res.data


def test_anonymous_requests_are_refused(s3, victim):
    base = s3.endpoint
    for method, url, body in [
        ("GET", f"{base}/{BUCKET}/{VICTIM}", None),
        ("HEAD", f"{base}/{BUCKET}/{VICTIM}", None),
        ("GET", f"{base}/{BUCKET}?list-type=2", None),
        ("GET", f"{base}/{BUCKET}", None),
        ("GET", f"{base}/", None),
        ("PUT", f"{base}/{BUCKET}/{VICTIM}", b"defaced"),
        ("PUT", f"{base}/{BUCKET}/{PREFIX_A}/anonymous.html", b"anonymous"),
        ("DELETE", f"{base}/{BUCKET}/{VICTIM}", None),
        ("PUT", f"{base}/anonymous-bucket", None),
    ]:
        res = http.request(method, url, body=body)
        assert res.status == 403, (method, url, res.status, res.data[:300])
    # A POST form without a policy or signature.
    res = http.request("POST", f"{base}/{BUCKET}", fields={"key": VICTIM, "file": ("f", b"defaced", "text/html")})
    assert res.status in (400, 403), res.data
    assert stored(s3, f"{PREFIX_A}/anonymous.html") is None


def test_a_presigned_read_opens_that_object_only(s3, settings, victim):
    shard = "team-a/job/uid-j/shard-1/attempt-1/blob/report-1.zip"
    other = "team-a/job/uid-j/shard-2/attempt-1/blob/report-2.zip"
    admin = s3.client()
    admin.put_object(Bucket=BUCKET, Key=shard, Body=b"blob 1")
    admin.put_object(Bucket=BUCKET, Key=other, Body=b"blob 2")
    grant = mint(settings, BUCKET, "team-a/job/uid-j", datetime.now(UTC) + timedelta(minutes=5), reads=[shard])
    (read,) = grant.reads
    res = http.request("GET", read.url)
    assert res.status == 200 and res.data == b"blob 1"
    parts = urlsplit(read.url)
    for key in (other, VICTIM):
        res = http.request("GET", urlunsplit(parts._replace(path=f"/{BUCKET}/{key}")))
        assert res.status == 403, (key, res.status, res.data[:300])
    for method in ("PUT", "DELETE"):  # the same URL with another verb
        res = http.request(method, read.url, body=b"x" if method == "PUT" else None)
        assert res.status == 403, (method, res.status, res.data[:300])
    res = http.request("GET", urlunsplit(parts._replace(path=f"/{BUCKET}", query=parts.query + "&list-type=2")))
    assert res.status == 403, res.data[:300]
    assert admin.get_object(Bucket=BUCKET, Key=shard)["Body"].read() == b"blob 1"


def test_an_expired_presigned_read_is_refused(s3, settings):
    key = "team-a/job/uid-k/shard-1/attempt-1/blob/report-1.zip"
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"blob")
    grant = mint(settings, BUCKET, "team-a/job/uid-k", datetime.now(UTC) + timedelta(seconds=2), reads=[key])
    time.sleep(3.5)
    res = http.request("GET", grant.reads[0].url)
    assert res.status == 403, res.data[:300]


def test_the_admin_identity_can_do_everything(s3):
    admin = s3.client()
    key_a, key_b = f"{PREFIX_A}/admin.txt", f"{PREFIX_B}/admin.txt"
    for key in (key_a, key_b):
        admin.put_object(Bucket=BUCKET, Key=key, Body=b"admin")
        assert admin.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"admin"
    admin.copy_object(Bucket=BUCKET, Key=f"{PREFIX_B}/copy.txt", CopySource={"Bucket": BUCKET, "Key": key_a})
    listed = {o["Key"] for o in admin.list_objects_v2(Bucket=BUCKET, Prefix="team-")["Contents"]}
    assert {key_a, key_b, f"{PREFIX_B}/copy.txt"} <= listed
    keys = (key_a, key_b, f"{PREFIX_B}/copy.txt")
    admin.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]})
    assert stored(s3, key_b) is None
    admin.create_bucket(Bucket="admin-made")
    assert "admin-made" in {b["Name"] for b in admin.list_buckets()["Buckets"]}
    admin.delete_bucket(Bucket="admin-made")
