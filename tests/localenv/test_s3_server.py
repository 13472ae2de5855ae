"""The local S3 server: SeaweedFS with one admin identity and nothing anonymous, in the local
environment (`cluster`) and as a throwaway server for tests (`integration`). What the upload grants
are held to on it: tests/security/test_s3_grants.py."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from supercheck_localenv import seaweedfs, services
from supercheck_localenv.layout import PORTS, Layout
from supercheck_localenv.procs import Proc
from supercheck_localenv.seaweedfs import Identity, WeedPorts, WeedServer, identities_config, server_argv
from tests.s3_kit import free_ports, throwaway_s3

WEED = Path("/cache/weed")


def anonymous_status(method: str, url: str, body: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method=method), timeout=10) as res:
            return res.status
    except urllib.error.HTTPError as exc:
        return exc.code


# ------------------------------------------------------------------ unit: configuration and command line

def test_the_identities_file_holds_exactly_the_identities_given_and_no_anonymous_one():
    config = identities_config([Identity("admin", "ak", "sk")])
    assert config == {"identities": [{"name": "admin", "credentials": [{"accessKey": "ak", "secretKey": "sk"}],
                                      "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
    with pytest.raises(ValueError, match="without identities"):
        identities_config([])  # SeaweedFS with no identity lets anyone do anything


def test_the_identities_file_is_readable_by_its_owner_only(tmp_path):
    server = WeedServer(tmp_path / "s3", WeedPorts.consecutive(30000), (Identity("admin", "ak", "sk"),))
    path = server.write_config()
    assert path.stat().st_mode & 0o777 == 0o600
    assert "sk" in path.read_text()


def test_every_port_is_given_on_loopback_and_the_extras_are_off(tmp_path):
    ports = WeedPorts.consecutive(19000)
    assert ports.all() == list(range(19000, 19008))
    argv = server_argv(WEED, tmp_path, ports, tmp_path / "c.json")
    assert argv[:2] == [str(WEED), "server"]
    for flag in ("-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3.port=19000", "-s3.port.grpc=19001",
                 "-master.port=19002", "-master.port.grpc=19003", "-volume.port=19004", "-volume.port.grpc=19005",
                 "-filer.port=19006", "-filer.port.grpc=19007", f"-s3.config={tmp_path / 'c.json'}",
                 "-s3.iam=false", "-s3.autoCreateBucket=false", "-master.telemetry=false",
                 "-s3.port.iceberg=0", "-s3.port.lance=0"):
        assert flag in argv
    # None of SeaweedFS's default ports, one of which (volume gRPC, 18080) is the operator's metrics port.
    assert not [a for a in argv if a.endswith(("=8080", "=18080", "=9333", "=8888", "=8333"))]


def test_the_local_environment_s3_is_the_admin_identity_on_its_fixed_ports(tmp_path):
    server = services.s3_server(Layout(tmp_path))
    assert server.ports.s3 == PORTS.s3 and server.endpoint == services.S3_ENDPOINT_URL
    assert server.data_dir == tmp_path / ".dev" / "data" / "s3"
    assert [(i.access_key, i.secret_key) for i in server.identities] == [(services.S3_ACCESS_KEY,
                                                                           services.S3_SECRET_KEY)]
    assert set(server.identities[0].actions) == set(seaweedfs.ADMIN_ACTIONS)


# ------------------------------------------------------------------ integration: a throwaway SeaweedFS

@pytest.mark.integration
def test_a_throwaway_server_refuses_strangers_creates_no_bucket_on_upload_and_keeps_its_objects(tmp_path):
    with throwaway_s3(tmp_path / "s3", buckets=["artifacts"]) as s3:
        admin = s3.client()
        admin.put_object(Bucket="artifacts", Key="ns/run/uid/attempt-1/result.json", Body=b"{}")
        assert anonymous_status("GET", f"{s3.endpoint}/artifacts/ns/run/uid/attempt-1/result.json") == 403
        stranger = s3.client(Identity("stranger", "not-a-key", "not-a-secret"))
        with pytest.raises(ClientError) as refused:
            stranger.list_objects_v2(Bucket="artifacts")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        wrong_secret = s3.client(Identity("admin", s3.admin.access_key, "wrong-secret"))
        with pytest.raises(ClientError):
            wrong_secret.get_object(Bucket="artifacts", Key="ns/run/uid/attempt-1/result.json")
        with pytest.raises(ClientError):  # an upload creates no bucket, not even the admin's
            admin.put_object(Bucket="no-such-bucket", Key="k", Body=b"x")
        assert {b["Name"] for b in admin.list_buckets()["Buckets"]} == {"artifacts"}

        s3.stop()
        s3.start()  # an outage: same ports, same data
        assert admin.get_object(Bucket="artifacts", Key="ns/run/uid/attempt-1/result.json")["Body"].read() == b"{}"
        # What the fixtures do between tests: list and batch-delete (with botocore's default checksums).
        keys = [{"Key": o["Key"]} for o in admin.list_objects_v2(Bucket="artifacts")["Contents"]]
        admin.delete_objects(Bucket="artifacts", Delete={"Objects": keys})
        assert admin.list_objects_v2(Bucket="artifacts").get("KeyCount", 0) == 0


@pytest.mark.integration
def test_start_s3_replaces_another_s3_server_and_is_idempotent(tmp_path):
    """What `make dev-up` runs (services.start_s3), on ports of the test's own in a layout of its own."""
    layout = Layout(tmp_path)
    ports = WeedPorts(*free_ports(8))
    endpoint = f"http://127.0.0.1:{ports.s3}"
    old = Proc(layout, "s3")  # the S3 an older .dev/ started (moto): recorded under the same name
    old.start(["sleep", "300"])
    old_pid = old.pid
    try:
        proc = services.start_s3(layout, ports)
        assert proc.pid != old_pid and "weed" in Proc(layout, "s3").record()["argv"][0]
        assert (tmp_path / ".dev" / "data" / "s3" / "s3-identities.json").exists()
        services.create_buckets(["artifacts", "reports"], endpoint)
        services.create_buckets(["artifacts", "reports"], endpoint)  # idempotent
        pid = proc.pid
        assert services.start_s3(layout, ports).pid == pid  # running with the same command: kept
        assert anonymous_status("GET", f"{endpoint}/artifacts?list-type=2") == 403
    finally:
        services.stop_s3(layout, ports)
    assert not Proc(layout, "s3").running()
    assert not [p for port in ports.all() for p in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")]


# ------------------------------------------------------------------ cluster: the local environment's S3

def test_the_local_environment_s3_takes_the_admin_key_and_refuses_anyone_else(kube_env, s3_client):
    from supercheck_contract import BUCKETS

    assert set(BUCKETS.values()) <= {b["Name"] for b in s3_client.list_buckets()["Buckets"]}
    services.create_buckets(BUCKETS.values())  # idempotent
    key = f"probe/{uuid.uuid4().hex}/result.json"
    bucket = BUCKETS["playwright"]
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"{}")
    try:
        endpoint = kube_env.env["S3_ENDPOINT_URL"]
        assert anonymous_status("GET", f"{endpoint}/{bucket}/{key}") == 403
        assert anonymous_status("GET", f"{endpoint}/{bucket}?list-type=2") == 403
        assert anonymous_status("PUT", f"{endpoint}/{bucket}/{key}", b"defaced") == 403
        assert s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"{}"
    finally:
        s3_client.delete_object(Bucket=bucket, Key=key)
