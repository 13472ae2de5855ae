"""The checks the operator makes itself: an HTTP request (aiohttp) and a TCP connect (asyncio).

Each answers a :class:`~supercheck.monitoring.CheckResult` (good or not, latency in ms, a short message
such as ``HTTP 200 in 12 ms``, ``expected status 200, got 503``, ``connection refused``, ``no answer
within 10 s``) and never raises: whatever goes wrong is the check's result. The timeout covers the whole
check (name resolution, connection, TLS, the answer and the part of the body read).

One :class:`Checker` per operator: one aiohttp session, and one semaphore bounding the checks made at
once (``SUPERCHECK_MONITOR_CONCURRENCY``); a check waits for a slot before its time starts. Each request
opens a fresh connection (no keep-alive): the latency is a new visitor's (connection and TLS included),
and a server closing an idle kept-alive connection at the moment it is reused can never pass for an outage.
Messages never quote the URL, which may carry a token.

The checks go out from the operator, where no runner NetworkPolicy applies, so an address guard stands
in for one: no connection, first or after a redirect, named or literal, reaches an address in
``SUPERCHECK_MONITOR_DENIED_CIDRS`` (link-local by default: the cloud metadata services). HTTP checks
are guarded where aiohttp makes each socket (``socket_factory``, given every resolved address), TCP
checks by resolving first and connecting to an allowed address.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import aiohttp

from supercheck.monitoring import CheckResult
from supercheck.monitormodels import HttpCheck, TcpCheck
from supercheck.notify import USER_AGENT
from supercheck.redact import redact

BODY_LIMIT = 1024 * 1024  # bodyContains looks at the first MiB of the body
MAX_REDIRECTS = 10


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DeniedAddress(OSError):
    """A check was about to connect to an address the operator's settings deny."""

    def __init__(self, address: str) -> None:
        super().__init__(errno.EACCES, f"address {address} is denied to monitors (SUPERCHECK_MONITOR_DENIED_CIDRS)")


class AddressGuard:
    """Whether a check may connect to an address (``denied``: CIDRs)."""

    def __init__(self, denied: Iterable[str] = ()) -> None:
        self.denied: list[Network] = [ipaddress.ip_network(c, strict=False) for c in denied]

    def check(self, address: str) -> None:
        """Raise :class:`DeniedAddress` for a denied address (an IPv4-mapped IPv6 one is seen as IPv4)."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip.version == net.version and ip in net for net in self.denied):
            raise DeniedAddress(str(ip))

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """aiohttp's socket maker, guarded: ``addr_info`` is (family, type, proto, canonname, sockaddr)."""
        family, type_, proto, _, sockaddr = addr_info
        self.check(str(sockaddr[0]))
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setblocking(False)
        return sock

    async def resolve(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """The addresses of ``host`` a check may connect to; DeniedAddress when there are none."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        allowed, denied = [], None
        for info in infos:
            try:
                self.check(str(info[4][0]))
                allowed.append(info)
            except DeniedAddress as exc:
                denied = exc
        if not allowed and denied is not None:
            raise denied
        return allowed


def _ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))


def _seconds(value: float) -> str:
    return f"{value:g} s"


def expected_text(expected: Sequence[int]) -> str:
    if not expected:
        return "a 2xx status"
    codes = [str(c) for c in expected]
    return "status " + (codes[0] if len(codes) == 1 else ", ".join(codes[:-1]) + " or " + codes[-1])


def status_ok(status: int, expected: Sequence[int]) -> bool:
    return status in expected if expected else 200 <= status < 300


def _os_error_text(exc: BaseException | None) -> str:
    """An OS-level connection error in words, without the address (the caller knows it)."""
    if exc is None:
        return "cannot connect"
    if isinstance(exc, DeniedAddress):
        return str(exc.strerror)
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if getattr(exc, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"cannot connect: {text}"


def _connect_error_text(exc: aiohttp.ClientConnectorError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS: the certificate is not trusted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return f"TLS: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host}"
    return _os_error_text(exc.os_error)


async def _read_body(resp: aiohttp.ClientResponse, limit: int = BODY_LIMIT) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _decode(body: bytes, resp: aiohttp.ClientResponse) -> str:
    try:
        return body.decode(resp.charset or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")


async def http_check(session: aiohttp.ClientSession, check: HttpCheck, headers: Mapping[str, str]) -> CheckResult:
    """One request of ``check`` with these headers (the Secret ones resolved by the caller)."""
    started = time.monotonic()
    timeout = check.timeoutSeconds
    try:
        async with asyncio.timeout(timeout):
            async with session.request(
                check.method, check.url, headers={"User-Agent": USER_AGENT, **headers},
                data=check.body.encode() if check.body is not None else None,
                ssl=check.tlsVerify,
                allow_redirects=check.followRedirects, max_redirects=MAX_REDIRECTS,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                status = resp.status
                if not status_ok(status, check.expectedStatus):
                    return CheckResult(False, _ms(started),
                                       f"expected {expected_text(check.expectedStatus)}, got {status}")
                if check.bodyContains is not None:
                    text = _decode(await _read_body(resp), resp)
                    if check.bodyContains not in text:
                        return CheckResult(False, _ms(started), f"body does not contain {check.bodyContains!r}")
                latency = _ms(started)
                return CheckResult(True, latency, f"HTTP {status} in {latency} ms")
    except TimeoutError:  # asyncio's and aiohttp's timeouts alike
        return CheckResult(False, _ms(started), f"no answer within {_seconds(timeout)}")
    except aiohttp.TooManyRedirects:
        return CheckResult(False, _ms(started), f"more than {MAX_REDIRECTS} redirects")
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError):
        return CheckResult(False, _ms(started), "invalid URL")
    except aiohttp.ClientConnectorError as exc:
        return CheckResult(False, _ms(started), _connect_error_text(exc))
    except aiohttp.ServerDisconnectedError:
        return CheckResult(False, _ms(started), "the server closed the connection without an answer")
    except (aiohttp.ClientError, OSError, ValueError) as exc:  # a broken answer, a reset, a bad header value
        return CheckResult(False, _ms(started), redact(f"{type(exc).__name__}: {exc}")[:512])


async def tcp_check(check: TcpCheck, guard: AddressGuard | None = None) -> CheckResult:
    """Connect to ``host:port`` (and close at once): good when the connection is accepted."""
    started = time.monotonic()
    timeout = check.timeoutSeconds
    writer: asyncio.StreamWriter | None = None
    guard = guard or AddressGuard()
    try:
        async with asyncio.timeout(timeout):
            infos = await guard.resolve(check.host, check.port)
            last: OSError | None = None
            for info in infos:  # each allowed address in turn, as open_connection would try them
                try:
                    _, writer = await asyncio.open_connection(info[4][0], check.port)
                    break
                except OSError as exc:
                    last = exc
            if writer is None:
                raise last or OSError(errno.EHOSTUNREACH, "no address")
        latency = _ms(started)
        return CheckResult(True, latency, f"TCP connect in {latency} ms")
    except TimeoutError:
        return CheckResult(False, _ms(started), f"no answer within {_seconds(timeout)}")
    except DeniedAddress as exc:
        return CheckResult(False, _ms(started), str(exc.strerror))
    except OSError as exc:
        if isinstance(exc, socket.gaierror):
            return CheckResult(False, _ms(started), f"cannot resolve host {check.host}")
        return CheckResult(False, _ms(started), _os_error_text(exc))
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class Checker:
    """The operator's checks: one session, at most ``concurrency`` checks at once."""

    def __init__(self, concurrency: int, denied_cidrs: Iterable[str] = ()) -> None:
        self.concurrency = concurrency
        self.guard = AddressGuard(denied_cidrs)
        self._slots = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the ``concurrency`` check slots; the check's time (and its lag) starts inside."""
        async with self._slots:
            yield

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No pool: every request has a connection of its own (see the module's docstring); no limit
            # but the slots. The default TLS context verifies; a check with tlsVerify false passes ssl=False.
            connector = aiohttp.TCPConnector(limit=0, force_close=True, ttl_dns_cache=10,
                                             socket_factory=self.guard.socket_factory)
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def http(self, check: HttpCheck, headers: Mapping[str, str]) -> CheckResult:
        return await http_check(self.session(), check, headers)

    async def tcp(self, check: TcpCheck) -> CheckResult:
        return await tcp_check(check, self.guard)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
