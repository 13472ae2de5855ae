"""The services Supercheck stores into, on loopback with data under `.dev/`:
Redis and PostgreSQL from Debian's packages, and an S3 server.

S3 is SeaweedFS (Apache-2.0, built from the Go module proxy by hack/build-seaweedfs.sh;
see supercheck_localenv.seaweedfs), not MinIO, which is AGPL-3.0 (this workplace's package
list marks it "use something else"), and no longer moto, which checks neither signatures nor
POST policies: the runner pods' upload grants must be refused by the local S3 exactly where
real S3 refuses them. One identity, the admin (S3_ACCESS_KEY), used by the operator to sign
the grants, by the tests' fixtures and by `make demo`; no anonymous access.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

from supercheck_localenv import otelcol, seaweedfs
from supercheck_localenv.controlplane import wait_for
from supercheck_localenv.layout import PORTS, Layout
from supercheck_localenv.procs import Proc

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
PG_DB = "supercheck"
S3_ACCESS_KEY = "supercheck"
S3_SECRET_KEY = "supercheck-secret"

REDIS_URL = f"redis://127.0.0.1:{PORTS.redis}/0"
DATABASE_URL = f"postgresql://{PG_USER}@127.0.0.1:{PORTS.postgres}/{PG_DB}"
S3_ENDPOINT_URL = f"http://127.0.0.1:{PORTS.s3}"
S3_ADMIN = seaweedfs.Identity("supercheck-admin", S3_ACCESS_KEY, S3_SECRET_KEY)


def redis_ping() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", PORTS.redis), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(layout: Layout) -> Proc:
    proc = Proc(layout, "redis")
    if not proc.running():
        data = layout.data("redis")
        data.mkdir(parents=True, exist_ok=True)
        proc.start(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server",
                "--bind", "127.0.0.1",
                "--port", str(PORTS.redis),
                "--dir", str(data),
                # The ledger is rebuilt from the cluster after a restart; no persistence needed.
                "--save", "",
                "--appendonly", "no",
            ]
        )
    wait_for("redis", redis_ping, 30, proc)
    return proc


def _pg_ready() -> bool:
    res = subprocess.run(
        [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(PORTS.postgres), "-d", "postgres", "-U", PG_USER],
        capture_output=True,
    )
    return res.returncode == 0


def _as_postgres(argv: list[str], **kw) -> subprocess.CompletedProcess:
    # PostgreSQL refuses to run as root; Debian's package created the postgres user.
    return subprocess.run(["runuser", "-u", PG_USER, "--"] + argv, check=True, **kw)


def start_postgres(layout: Layout) -> Proc:
    proc = Proc(layout, "postgres")
    data = layout.data("postgres")
    if not proc.running():
        pw = pwd.getpwnam(PG_USER)
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            _chown_tree(data, pw.pw_uid, pw.pw_gid)
            _as_postgres(
                [str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
                stdout=subprocess.DEVNULL,
            )
        _chown_tree(data, pw.pw_uid, pw.pw_gid)
        # The parent folders must be traversable by the postgres user.
        for parent in [data.parent, *data.parents]:
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
        proc.start(
            [
                "runuser", "-u", PG_USER, "--",
                str(PG_BIN / "postgres"),
                "-D", str(data),
                "-h", "127.0.0.1",
                "-p", str(PORTS.postgres),
                "-k", str(data),  # unix socket in the data dir, not /var/run/postgresql
                "-c", "fsync=off",
                "-c", "max_connections=200",
            ]
        )
    wait_for("postgres", _pg_ready, 60, proc)
    _ensure_database()
    return proc


def _ensure_database() -> None:
    exists = subprocess.run(
        ["runuser", "-u", PG_USER, "--", str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(PORTS.postgres),
         "-U", PG_USER, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{PG_DB}'"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    if exists != "1":
        _as_postgres([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(PORTS.postgres), "-U", PG_USER, PG_DB])


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    for p in [path, *path.rglob("*")]:
        try:
            if p.stat().st_uid != uid:
                os.chown(p, uid, gid)
        except FileNotFoundError:
            pass


def s3_server(layout: Layout, ports: seaweedfs.WeedPorts | None = None) -> seaweedfs.WeedServer:
    """The local environment's S3: SeaweedFS with its data in .dev/data/s3, S3 on PORTS.s3 and the
    master, volume server and filer behind it on the seven ports after it."""
    return seaweedfs.WeedServer(layout.data("s3"), ports or seaweedfs.WeedPorts.consecutive(PORTS.s3), (S3_ADMIN,))


def start_s3(layout: Layout, ports: seaweedfs.WeedPorts | None = None) -> Proc:
    """Start SeaweedFS (idempotent) and wait until it stores objects: about 11 s on a fresh data folder
    (the filer's first start), 4 s on an existing one. ``ports``: the tests' own, never PORTS.s3's."""
    proc = Proc(layout, "s3")
    server = s3_server(layout, ports)
    weed = seaweedfs.weed_binary()
    argv = server.argv(weed)
    if proc.running() and (proc.record() or {}).get("argv") != argv:
        # Another S3 server (moto, before SeaweedFS) or another build of it: replace it.
        proc.stop(timeout=seaweedfs.STOP_GRACE_SECONDS)
    if not proc.running():
        server.write_config()
        proc.start(argv, env={"PATH": "/usr/bin:/bin", **seaweedfs.SERVER_ENV}, cwd=server.data_dir)
    wait_for("s3", lambda: seaweedfs.ready(server.endpoint, S3_ADMIN), 60, proc)
    wait_for("s3 writes", lambda: seaweedfs.writable(server.endpoint, S3_ADMIN), 60, proc)
    return proc


def stop_s3(layout: Layout, ports: seaweedfs.WeedPorts | None = None) -> None:
    Proc(layout, "s3").stop(timeout=seaweedfs.STOP_GRACE_SECONDS)
    s3_server(layout, ports).ports.remove_local_sockets()


def create_buckets(names, endpoint: str = S3_ENDPOINT_URL) -> None:
    s3 = seaweedfs.admin_client(endpoint, S3_ADMIN)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for name in names:
        if name not in existing:
            s3.create_bucket(Bucket=name)


def collector(layout: Layout) -> otelcol.Collector:
    """The local environment's trace sink (tracing on): OTLP on PORTS.otlp_grpc and PORTS.otlp_http,
    spans written to .dev/data/otel/traces.json."""
    return otelcol.Collector(layout.data("otel"), PORTS.otlp_grpc, PORTS.otlp_http)


def start_otelcol(layout: Layout) -> Proc:
    """Start the OpenTelemetry Collector (idempotent; the first time builds it: minutes)."""
    proc = Proc(layout, "otelcol")
    server = collector(layout)
    argv = server.argv(otelcol.binary())
    if proc.running() and (proc.record() or {}).get("argv") != argv:
        proc.stop()
    if not proc.running():
        server.write_config()
        proc.start(argv, env={"PATH": "/usr/bin:/bin"}, cwd=server.data_dir)
    wait_for("otelcol", server.ready, 30, proc)
    return proc
