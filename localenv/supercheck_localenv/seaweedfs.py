"""SeaweedFS as an S3 server that checks what real S3 checks: SigV4 signatures (headers and presigned
URLs), POST policies (expiry, conditions, content-length-range), and no anonymous access.

The runner pods' upload grants (operator/supercheck/grants.py) are only as good as the server that
enforces them, so the local environment and the tests use a server that does (moto checks neither).
One `weed server` process runs SeaweedFS's master, a volume server, a filer and the S3 gateway, all
on loopback, with its data in one folder. Both the local environment (`services.start_s3`) and the
tests' throwaway servers (tests/s3_kit.py) start it through :func:`server_argv`.

Apache-2.0; built from the Go module proxy by hack/build-seaweedfs.sh (MinIO, the usual choice, is
AGPL-3.0).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supercheck_localenv.layout import REPO_ROOT

# Every S3 action an identity can hold in SeaweedFS: the admin identity holds them all.
ADMIN_ACTIONS = ("Admin", "Read", "List", "Tagging", "Write")
# SeaweedFS grows 7 volumes per collection (each bucket is one) by default; one at a time lets a
# handful of volume slots serve every bucket. Small volumes keep the data folder small.
VOLUME_SIZE_LIMIT_MB = 256
MAX_VOLUMES = 100
# Its configuration through the environment (WEED_ + the master.toml key): grow one volume at a time,
# and allocate volume ids at once after a start (the default 5 s hold guards against volume servers of
# a lost master still reporting in; here the one volume server is in the same process).
SERVER_ENV = {"WEED_MASTER_VOLUME_GROWTH_COPY_1": "1", "WEED_MASTER_VOLUME_GROWTH_ALLOCATION_DEFERRAL": "0s"}
# `weed server` stops its volume server before its filer, whose last metadata-log flush then waits
# 15 s for a volume that is gone and is dropped anyway. Objects and the filer's store are on disk
# before each request is answered, so a stop may SIGKILL after this grace.
STOP_GRACE_SECONDS = 2.0
PROBE_BUCKET = "supercheck-start-probe"


@dataclass(frozen=True)
class Identity:
    """One S3 identity of the server: a key pair and the actions it may take."""

    name: str
    access_key: str
    secret_key: str
    actions: Sequence[str] = ADMIN_ACTIONS


@dataclass(frozen=True)
class WeedPorts:
    """The loopback ports one `weed server` listens on: S3 and the three parts behind it, HTTP and gRPC."""

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int

    @classmethod
    def consecutive(cls, s3: int) -> WeedPorts:
        """S3 on ``s3``, the rest on the seven ports after it (the local environment: 19000-19007)."""
        return cls(*range(s3, s3 + 8))

    def all(self) -> list[int]:
        return [self.s3, self.s3_grpc, self.master, self.master_grpc, self.volume, self.volume_grpc,
                self.filer, self.filer_grpc]

    def remove_local_sockets(self) -> None:
        """Remove the unix sockets a stopped server leaves in /tmp (`seaweedfs-<part>[-grpc]-<port>.sock`,
        named by our ports, so ours alone); a server on the same port would replace them anyway."""
        for port in self.all():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


@dataclass(frozen=True)
class WeedServer:
    """Where one server keeps its data and its configuration, and the ports it uses."""

    data_dir: Path
    ports: WeedPorts
    identities: Sequence[Identity] = field(default_factory=tuple)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "s3-identities.json"

    def write_config(self) -> Path:
        """The S3 identities file: exactly ``identities``, nothing anonymous (no identity named anonymous,
        so every unsigned request is refused). Written 0600: it holds the secret keys."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(identities_config(self.identities), indent=2) + "\n")
        self.config_file.chmod(0o600)
        return self.config_file

    def argv(self, weed: Path) -> list[str]:
        return server_argv(weed, self.data_dir, self.ports, self.config_file)


def identities_config(identities: Sequence[Identity]) -> dict:
    """SeaweedFS's static S3 configuration (`-s3.config`)."""
    if not identities:
        raise ValueError("an S3 server without identities would let anyone do anything: name at least one")
    return {
        "identities": [
            {
                "name": ident.name,
                "credentials": [{"accessKey": ident.access_key, "secretKey": ident.secret_key}],
                "actions": list(ident.actions),
            }
            for ident in identities
        ]
    }


def server_argv(weed: Path, data_dir: Path, ports: WeedPorts, config_file: Path) -> list[str]:
    """`weed server` with the S3 gateway, on loopback only, every port given (its defaults, such as
    volume gRPC on 18080, collide with the local environment's), and nothing else it could start:
    no telemetry, no IAM API, no Iceberg or Lance endpoints, no bucket created by an upload."""
    return [
        str(weed), "server",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-dir={data_dir}",
        f"-master.port={ports.master}", f"-master.port.grpc={ports.master_grpc}",
        f"-volume.port={ports.volume}", f"-volume.port.grpc={ports.volume_grpc}",
        f"-filer.port={ports.filer}", f"-filer.port.grpc={ports.filer_grpc}",
        "-filer", "-s3",
        f"-s3.port={ports.s3}", f"-s3.port.grpc={ports.s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-s3.config={config_file}",
        "-s3.iam=false",
        "-s3.autoCreateBucket=false",
        "-master.telemetry=false",
        f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
        f"-volume.max={MAX_VOLUMES}",
        "-volume.preStopSeconds=0",  # stop at once: nothing replicates from this volume server
        "-master.electionTimeout=1s",  # one master: no peer to wait for after a restart
    ]


def weed_binary(root: Path = REPO_ROOT, build: bool = True) -> Path:
    """The `weed` binary hack/build-seaweedfs.sh built (building it first when ``build``; minutes cold)."""
    script = root / "hack" / "build-seaweedfs.sh"
    args = [str(script)] if build else [str(script), "--cached"]
    res = subprocess.run(args, stdout=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise FileNotFoundError(f"SeaweedFS is not built: run {script}" if not build
                                else f"{script} failed (exit {res.returncode})")
    return Path(res.stdout.strip().splitlines()[-1])


def admin_client(endpoint: str, identity: Identity, region: str = "us-east-1", timeout: float = 10.0):
    """A boto3 S3 client of ``identity``: path-style addressing (no bucket host names on loopback)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=region,
        aws_access_key_id=identity.access_key, aws_secret_access_key=identity.secret_key,
        config=Config(s3={"addressing_style": "path"}, connect_timeout=timeout, read_timeout=timeout,
                      retries={"max_attempts": 1}),
    )


def ready(endpoint: str, identity: Identity) -> bool:
    """Whether the server answers a signed request of ``identity`` (S3 gateway up, its filer reached)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        admin_client(endpoint, identity, timeout=2.0).list_buckets()
        return True
    except (BotoCoreError, ClientError):
        return False


def writable(endpoint: str, identity: Identity) -> bool:
    """Whether the server stores an object (a probe bucket, created and removed again).

    A server that answers is not yet one that writes: after a start, the master defers allocating
    volume ids (about 5 s) and the filer waits to join the lock ring (up to about 10 s); a write
    blocks until both. Waiting here once keeps that out of a test's first upload and its timing."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = admin_client(endpoint, identity, timeout=30.0)
    try:
        if PROBE_BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=PROBE_BUCKET)
        client.put_object(Bucket=PROBE_BUCKET, Key="probe", Body=b"")
        client.delete_object(Bucket=PROBE_BUCKET, Key="probe")
        client.delete_bucket(Bucket=PROBE_BUCKET)
        return True
    except (BotoCoreError, ClientError):
        return False
