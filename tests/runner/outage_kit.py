"""Tools for S3 outage tests: an S3 server of the test's own (real moto) that can be stopped and
started again, a TCP front that can go away *during* an upload while the server behind it keeps
its data, and the runner as a process whose output the test can wait on.

Why a front as well as stopping the server: moto keeps its objects in memory, so a stopped and
restarted server is empty. Stopping the real server shows the runner waiting out a real outage
(the bucket is created again when it comes back); the front cuts connections at an exact moment
(the first PUT of the upload) and leaves the objects uploaded before it in place, so the final
listing shows every artifact.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from supercheck_contract import (
    BUCKETS,
    UPLOAD_GRANT_ENV,
    RunnerConfig,
    UploadGrant,
    artifact_prefix,
    decode_termination_message,
)
from supercheck_runner import artifacts

from .conftest import MOTO, RUNNER, S3_CREDENTIALS, RunOutcome, free_port, s3_client, stop, wait_for_port

QUICK_BACKOFF = {"SUPERCHECK_UPLOAD_BACKOFF_SECONDS": "0.2", "SUPERCHECK_UPLOAD_BACKOFF_MAX_SECONDS": "1"}


class S3Server:
    """moto's S3 server on a port of its own, with the contract's buckets."""

    def __init__(self, *, port: int | None = None, auth: bool = False):
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.auth = auth
        self.proc: subprocess.Popen | None = None

    def start(self) -> S3Server:
        env = {**os.environ, **({"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if self.auth else {})}
        self.proc = subprocess.Popen([str(MOTO), "-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        if not self.auth:
            client = s3_client(self.endpoint)
            for bucket in BUCKETS.values():
                client.create_bucket(Bucket=bucket)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def keys(self, bucket: str, prefix: str) -> set[str]:
        listed = s3_client(self.endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
        return {o["Key"] for o in listed.get("Contents", [])}

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Front:
    """A TCP front for an S3 server: ``down()`` closes its port and cuts every open connection
    (new ones are refused, in-flight requests fail), ``up()`` opens it again. With ``down_at_put``
    it goes down by itself when that PUT request arrives (1: the first), before passing it on."""

    def __init__(self, target_port: int, *, down_at_put: int | None = None):
        self.target_port = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.down_at_put = down_at_put
        self.went_down = threading.Event()
        self.puts_passed = 0  # PUT requests passed on before it went down
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def up(self) -> Front:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                try:
                    # linger 0: a reset, as a crashed server gives; shutdown wakes the pump blocked on it
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()
        self.went_down.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and b"PUT /" in data and not self.went_down.is_set():
                    with self._lock:
                        due = self.down_at_put is not None and self.puts_passed + 1 >= self.down_at_put
                        self.puts_passed += 0 if due else 1
                    if due:
                        self.down()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class RunnerProcess:
    """supercheck-runner started as a pod would start it; the test waits on its output meanwhile."""

    def __init__(self, workdir: Path, kind: str, script: str, *, s3_endpoint: str, timeout_seconds: int = 60,
                 settings_env: dict[str, str] | None = None, env: dict[str, str] | None = None,
                 grant: Callable[[str, str], UploadGrant] | None = None, **config_fields: object):
        """``grant(bucket, prefix)``: the pod's upload grant (then no key nor endpoint in its env)."""
        uid = uuid.uuid4().hex[:12]
        name = f"{kind}-{uid[:6]}"
        script_path = workdir / f"script-{uid}" / ("test.spec.ts" if kind == "playwright" else "script.js")
        script_path.parent.mkdir(parents=True)
        script_path.write_text(script)
        self.config = RunnerConfig.model_validate({
            "type": kind, "scriptPath": str(script_path), "timeoutSeconds": timeout_seconds, "runName": name,
            "namespace": "runner-tests", "attempt": 1, "bucket": BUCKETS["k6" if kind == "k6" else "playwright"],
            "prefix": artifact_prefix("runner-tests", name, uid, 1), "workDir": str(workdir / f"work-{uid}"),
            **config_fields,
        })
        self.termination = workdir / f"termination-{uid}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            **self.config.to_env(),
            **S3_CREDENTIALS,
            "S3_ENDPOINT_URL": s3_endpoint,
            "SUPERCHECK_TERMINATION_MESSAGE_PATH": str(self.termination),
            **(settings_env or {}),
            **(env or {}),
        }
        if grant is not None:
            for key in (*S3_CREDENTIALS, "S3_ENDPOINT_URL"):
                env.pop(key, None)
            grant_file = workdir / f"grant-{uid}.json"
            grant_file.write_text(grant(self.config.bucket, self.config.prefix).model_dump_json())
            env[UPLOAD_GRANT_ENV] = str(grant_file)
        self.lines: list[str] = []
        self._new_line = threading.Condition()
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(RUNNER)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()

    def wait_for_line(self, text: str, timeout: float = 60) -> str:
        """The first output line containing ``text`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        with self._new_line:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"no output line with {text!r} after {timeout}s:\n{''.join(self.lines)}")
                self._new_line.wait(min(left, 0.5))

    def finish(self, timeout: float = 120) -> RunOutcome:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5)
        seconds = time.monotonic() - self.started
        message = self.termination.read_text() if self.termination.exists() else ""
        return RunOutcome(self.proc.returncode, decode_termination_message(message), message, "".join(self.lines),
                          self.config, seconds)

    def planned_keys(self) -> set[str]:
        """Every key the runner meant to upload: its own plan of out/, and result.json."""
        out = Path(self.config.workDir) / "out"
        keys = {item.key for item in artifacts.plan(out, self.config.prefix)}
        return keys | {artifacts.object_key(self.config.prefix, "result.json")}
