"""Real servers for the Monitor tests, on ports the OS chooses (port 0): a site whose answers the test
sets (and which it can stop and start again on the same port), a webhook receiver, a self-signed
certificate for a TLS site."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web


@dataclass
class Site:
    """An aiohttp site: ``status``, ``body``, ``delay`` (seconds before answering) are the test's to set.
    ``stop()`` and ``start()`` again keep the port (an outage, then the site back)."""

    status: int = 200
    body: str = "<h1>Welcome to the Demo Shop</h1>"
    delay: float = 0.0
    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)  # client (host, port): one per connection
    in_flight: int = 0
    max_in_flight: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}/"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            if peer:
                self.peers.add((peer[0], peer[1]))
            self.requests.append((request.method, request.path_qs, dict(request.headers), await request.read()))
            if request.path == "/redirect":
                raise web.HTTPFound("/")
            if request.path == "/echo":
                return web.json_response({"headers": dict(request.headers), "method": request.method,
                                          "body": (await request.read()).decode()})
            if request.path == "/big":  # 2 MiB of filler, then the word
                return web.Response(text="x" * (2 * 1024 * 1024) + "NEEDLE")
            if request.path == "/slow-body":  # the headers at once, the body late
                resp = web.StreamResponse(status=200)
                await resp.prepare(request)
                await resp.write(b"start ")
                await asyncio.sleep(self.delay)
                await resp.write(b"end")
                return resp
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(status=self.status, text=self.body, content_type="text/html")
        finally:
            self.in_flight -= 1

    async def start(self) -> Site:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context, reuse_address=True)
        await site.start()
        if not self.port:
            server = site._server
            assert server is not None and server.sockets
            self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class Hooks:
    """A webhook receiver: records each POSTed JSON body."""

    posts: list[dict] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}?token=s3cret"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.posts.append(json.loads(await request.read()))
        return web.Response(status=200)

    async def start(self) -> Hooks:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def self_signed(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1 (no CA trusts it)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
