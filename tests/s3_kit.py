"""A throwaway S3 server for tests that need a real one but no cluster: SeaweedFS on free ports in a
folder of the test's own, checking signatures and POST policies as real S3 does (moto checks neither).

    with throwaway_s3(tmp_path, buckets=["b"]) as s3:
        s3.client().put_object(Bucket="b", Key="k", Body=b"x")   # the admin identity
        s3.stop(); ...; s3.start()                                # an outage; the data stays

The first use on a machine builds SeaweedFS (hack/build-seaweedfs.sh; `make deps` does it already).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from supercheck_localenv.seaweedfs import (
    SERVER_ENV,
    STOP_GRACE_SECONDS,
    Identity,
    WeedPorts,
    WeedServer,
    admin_client,
    ready,
    weed_binary,
    writable,
)

ADMIN = Identity("test-admin", "test-admin-key", "test-admin-secret")
START_TIMEOUT = 60.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports nothing listens on now (the kernel's choice: clear of the fixed ports)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


class ThrowawayS3:
    """One SeaweedFS `weed server` (S3 with the master, volume server and filer behind it)."""

    def __init__(self, directory: Path, identities: Sequence[Identity] = (ADMIN,)):
        self.server = WeedServer(Path(directory), WeedPorts(*free_ports(8)), tuple(identities))
        self.admin = self.server.identities[0]
        self.weed = weed_binary()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def log_file(self) -> Path:
        return self.server.data_dir / "weed.log"

    def client(self, identity: Identity | None = None):
        """A boto3 S3 client of ``identity`` (default: the admin), path-style."""
        return admin_client(self.endpoint, identity or self.admin)

    def start(self) -> None:
        """Start the server (again: same ports, same data) and wait until it answers a signed request."""
        self.server.write_config()
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                self.server.argv(self.weed), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.server.data_dir, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **SERVER_ENV},
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        for up in (ready, writable):
            while not up(self.endpoint, self.admin):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start: {self.log_tail()}")
                time.sleep(0.1)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.server.ports.remove_local_sockets()

    def create_buckets(self, names: Iterable[str]) -> None:
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for name in names:
            if name not in existing:
                client.create_bucket(Bucket=name)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


@contextmanager
def throwaway_s3(directory: Path | str, buckets: Iterable[str] = (),
                 identities: Sequence[Identity] = (ADMIN,)) -> Iterator[ThrowawayS3]:
    """A SeaweedFS S3 server of the caller's own, with ``buckets``; stopped on exit."""
    s3 = ThrowawayS3(Path(directory), identities)
    s3.start()
    try:
        s3.create_buckets(buckets)
        yield s3
    finally:
        s3.stop()
