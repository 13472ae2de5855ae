"""Real git servers on loopback for the git source's tests: ``git daemon`` (git://, no auth) and
``git http-backend`` behind a small HTTP server with Basic auth (http://), and a repository with
known commits, tags, a branch and links to serve. Ports come from 18600-18699."""

from __future__ import annotations

import base64
import errno
import os
import random
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from .conftest import wait_for_port

PORTS = range(18600, 18700)


def ports() -> Iterator[int]:
    """The test range's ports, from a random start (two test runs at once rarely collide)."""
    start = random.randrange(len(PORTS))
    for i in range(len(PORTS)):
        yield PORTS[(start + i) % len(PORTS)]


def free_port() -> int:
    for port in ports():
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


# ---------------------------------------------------------------- the repository

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C",
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


# A k6 test and a module it imports, as a repository would hold them (k6/ of the repository).
K6_CHECKS = """
import http from 'k6/http';
import { check } from 'k6';
import { home } from './lib/site.js';

export const options = { vus: 1, iterations: 2, thresholds: { checks: ['rate==1'] } };

export default function () {
  const res = http.get(home());
  check(res, {
    'home page answers 200': (r) => r.status === 200,
    'the git credentials are not in the test environment':
      () => __ENV.SUPERCHECK_GIT_PASSWORD === undefined && __ENV.SUPERCHECK_GIT_USERNAME === undefined,
  });
}
"""

K6_SITE = """
export function home() { return `${__ENV.TARGET_URL}/`; }
"""


@dataclass
class Repo:
    """A bare repository ``<root>/repo.git``; ``shas`` by name: v1 (tagged v1, annotated, and
    v1-light), main (the tip of main, HEAD), feature (the tip of the branch feature)."""

    root: Path
    shas: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "repo.git"


def make_repo(root: Path) -> Repo:
    """suite/version.txt says which commit it is; k6/ is a k6 test; ``escape`` links out of the
    repository, ``inside`` links to suite/."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    (work / "suite").mkdir()
    (work / "suite" / "version.txt").write_text("v1\n")
    (work / "k6" / "lib").mkdir(parents=True)
    (work / "k6" / "checks.js").write_text(K6_CHECKS)
    (work / "k6" / "lib" / "site.js").write_text(K6_SITE)
    (work / "README.md").write_text("a suite\n")
    (work / "escape").symlink_to("../../..")
    (work / "inside").symlink_to("suite")
    git(work, "add", ".")
    git(work, "commit", "-qm", "v1")
    git(work, "tag", "-a", "v1", "-m", "release v1")
    git(work, "tag", "v1-light")
    repo = Repo(root)
    repo.shas["v1"] = git(work, "rev-parse", "HEAD")
    (work / "suite" / "version.txt").write_text("main\n")
    git(work, "commit", "-qam", "main")
    repo.shas["main"] = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "-b", "feature")
    (work / "suite" / "version.txt").write_text("feature\n")
    git(work, "commit", "-qam", "feature")
    repo.shas["feature"] = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "main")
    git(root, "clone", "-q", "--bare", str(work), repo.name)
    git(root, "init", "-q", "--bare", "empty.git")
    return repo


# ---------------------------------------------------------------- git daemon (git://)


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """``git daemon`` exporting every repository under ``base``; yields ``git://127.0.0.1:<port>``."""
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}", "--listen=127.0.0.1",
             f"--port={port}", "--informative-errors", str(base)],
            env={**os.environ, **GIT_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, 5)
        except AssertionError:
            proc.kill()
            proc.wait()
            continue
        try:
            yield f"git://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    raise AssertionError("git daemon did not start")


# ---------------------------------------------------------------- git http-backend (http://, Basic auth)


class GitHttpServer:
    """``git http-backend`` as a CGI program behind http.server, with Basic auth when
    ``username`` is given. ``protocol_v2=False`` hides the client's Git-Protocol header, so the
    backend speaks protocol v0 (which refuses unadvertised objects, as many servers do).
    ``seen`` records each request as (method, path, authorized)."""

    def __init__(self, project_root: Path, username: str = "", password: str = "", protocol_v2: bool = True):
        self.project_root = project_root
        self.username = username
        self.password = password
        self.protocol_v2 = protocol_v2
        self.seen: list[tuple[str, str, bool]] = []
        kit = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                kit.handle(self)

            def do_POST(self) -> None:
                kit.handle(self)

        for port in ports():
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        else:
            raise AssertionError("no free port for the git http server")
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GitHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def authorized(self, header: str | None) -> bool:
        if not self.username:
            return True
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {token}"

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        path, _, query = req.path.partition("?")
        ok = self.authorized(req.headers.get("Authorization"))
        self.seen.append((req.command, path, ok))
        body = read_body(req)
        if not ok:
            req.send_response(401)
            req.send_header("WWW-Authenticate", 'Basic realm="git"')
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "PATH_INFO": unquote(path),
            "REQUEST_METHOD": req.command,
            "QUERY_STRING": query,
            "CONTENT_TYPE": req.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": req.client_address[0],
            "REMOTE_USER": self.username,
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for name, value in req.headers.items():  # HTTP_GIT_PROTOCOL, HTTP_CONTENT_ENCODING (gzip), ...
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_AUTHORIZATION", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            if key == "HTTP_GIT_PROTOCOL" and not self.protocol_v2:
                continue
            env[key] = value
        proc = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        status, headers, payload = parse_cgi(proc.stdout)
        req.send_response(status)
        for name, value in headers:
            req.send_header(name, value)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)


def read_body(req: BaseHTTPRequestHandler) -> bytes:
    """The request's body, by Content-Length or chunked (git sends a large POST in chunks)."""
    if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(req.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while req.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(req.rfile.read(size))
            req.rfile.readline()
    return req.rfile.read(int(req.headers.get("Content-Length") or 0))


def parse_cgi(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """A CGI program's output as (status, headers, body): ``Status: 404 Not Found`` sets the status."""
    found = [(i, sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := output.find(sep)) >= 0]
    if not found:
        return 500, [], output
    cut, sep = min(found)
    head, body = output[:cut].decode("latin-1"), output[cut + len(sep):]
    status, headers = 200, []
    for line in head.splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    return status, headers, body


# ---------------------------------------------------------------- a server that never answers


@contextmanager
def silent_server() -> Iterator[int]:
    """A port whose connections are accepted (by the kernel's backlog) and never answered."""
    with socket.socket() as s:
        for port in ports():
            try:
                s.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        s.listen(16)
        yield s.getsockname()[1]
