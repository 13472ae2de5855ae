"""The operator's own checks (supercheck.checks) against real servers on OS-chosen ports: HTTP (status,
body, headers, redirects, timeouts, TLS verified or not) and TCP; the check slots; never an exception."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from monitor_kit import Site, self_signed

from supercheck.checks import Checker, expected_text, http_check, tcp_check
from supercheck.monitoring import CheckResult
from supercheck.monitormodels import HttpCheck, TcpCheck


def run(coro):
    return asyncio.run(coro)


def closed_port() -> int:
    """A port nothing listens on (bound then released: connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def check_site(site: Site, path: str = "", headers: dict[str, str] | None = None, **check) -> CheckResult:
    await site.start()
    checker = Checker(4)
    try:
        return await checker.http(HttpCheck(url=site.url + path, **check), headers or {})
    finally:
        await checker.close()
        await site.stop()


def test_a_2xx_answer_is_up_with_its_latency():
    result = run(check_site(Site()))
    assert result.ok and result.latency_ms is not None and result.latency_ms < 2000
    assert result.message == f"HTTP 200 in {result.latency_ms} ms"


@pytest.mark.parametrize(("status", "expected", "ok", "message"), [
    (503, [], False, "expected a 2xx status, got 503"),
    (204, [], True, "HTTP 204 in"),
    (204, [200], False, "expected status 200, got 204"),
    (503, [503], True, "HTTP 503 in"),
    (404, [200, 301, 302], False, "expected status 200, 301 or 302, got 404"),
])
def test_the_status_is_checked_against_expected_status(status, expected, ok, message):
    result = run(check_site(Site(status=status), expectedStatus=expected))
    assert result.ok is ok and result.message.startswith(message)


def test_body_contains():
    assert run(check_site(Site(), bodyContains="Welcome")).ok
    result = run(check_site(Site(), bodyContains="Goodbye"))
    assert (result.ok, result.message) == (False, "body does not contain 'Goodbye'")


def test_body_contains_reads_at_most_a_mebibyte():
    result = run(check_site(Site(), "big", bodyContains="NEEDLE"))  # the word is after 2 MiB
    assert (result.ok, result.message) == (False, "body does not contain 'NEEDLE'")
    assert run(check_site(Site(), "big", bodyContains="xxxx")).ok


def test_method_headers_and_body_are_sent():
    site = Site()
    result = run(check_site(site, "echo", headers={"Authorization": "Bearer t0ken"}, method="POST",
                            body='{"q": 1}', bodyContains='"method": "POST"'))
    assert result.ok, result
    method, path, headers, body = site.requests[0]
    assert (method, path, body) == ("POST", "/echo", b'{"q": 1}')
    assert headers["Authorization"] == "Bearer t0ken" and headers["User-Agent"].startswith("supercheck/")


def test_redirects_are_followed_unless_told_not_to():
    assert run(check_site(Site(), "redirect")).ok
    result = run(check_site(Site(), "redirect", followRedirects=False))
    assert (result.ok, result.message) == (False, "expected a 2xx status, got 302")


def test_no_answer_within_the_timeout():
    t0 = time.monotonic()
    result = run(check_site(Site(delay=3), timeoutSeconds=0.3))
    assert (result.ok, result.message) == (False, "no answer within 0.3 s")
    assert time.monotonic() - t0 < 2.5 and 250 <= result.latency_ms < 2000


def test_the_timeout_covers_the_body():
    result = run(check_site(Site(delay=3), "slow-body", timeoutSeconds=0.4, bodyContains="end"))
    assert (result.ok, result.message) == (False, "no answer within 0.4 s")


def test_connection_refused():
    async def go():
        checker = Checker(1)
        try:
            return await checker.http(HttpCheck(url=f"http://127.0.0.1:{closed_port()}/"), {})
        finally:
            await checker.close()

    result = run(go())
    assert (result.ok, result.message) == (False, "connection refused")


def test_a_host_that_does_not_resolve():
    async def go():
        checker = Checker(1)
        try:
            return await checker.http(HttpCheck(url="http://no-such-host.invalid/", timeoutSeconds=10), {})
        finally:
            await checker.close()

    result = run(go())
    assert (result.ok, result.message) == (False, "cannot resolve host no-such-host.invalid")


def test_tls_is_verified_unless_tls_verify_is_false(tmp_path):
    untrusted = run(check_site(Site(ssl_context=self_signed(tmp_path))))
    assert not untrusted.ok and untrusted.message.startswith("TLS: the certificate is not trusted"), untrusted
    trusted_anyway = run(check_site(Site(ssl_context=self_signed(tmp_path)), tlsVerify=False))
    assert trusted_anyway.ok and trusted_anyway.message.startswith("HTTP 200 in")


def test_each_check_has_a_connection_of_its_own():
    async def go():
        site = await Site().start()
        checker = Checker(4)
        try:
            for _ in range(3):
                assert (await checker.http(HttpCheck(url=site.url), {})).ok
        finally:
            await checker.close()
            await site.stop()
        return site

    site = run(go())
    assert len(site.requests) == 3 and len(site.peers) == 3  # no kept-alive connection reused


def test_the_slots_bound_the_checks_made_at_once():
    async def go():
        site = await Site(delay=0.2).start()
        checker = Checker(2)

        async def one():
            async with checker.slot():
                return await checker.http(HttpCheck(url=site.url), {})

        try:
            results = await asyncio.gather(*(one() for _ in range(6)))
        finally:
            await checker.close()
            await site.stop()
        return site, results

    site, results = run(go())
    assert all(r.ok for r in results)
    assert site.max_in_flight == 2


def test_tcp_connect():
    async def go():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await tcp_check(TcpCheck(host="127.0.0.1", port=port))
        finally:
            server.close()
            await server.wait_closed()

    result = run(go())
    assert result.ok and result.message == f"TCP connect in {result.latency_ms} ms"


def test_tcp_refused_and_unresolvable():
    refused = run(tcp_check(TcpCheck(host="127.0.0.1", port=closed_port())))
    assert (refused.ok, refused.message) == (False, "connection refused")
    nowhere = run(tcp_check(TcpCheck(host="no-such-host.invalid", port=80)))
    assert (nowhere.ok, nowhere.message) == (False, "cannot resolve host no-such-host.invalid")


def test_tcp_no_answer_within_the_timeout():
    # A listener that never accepts, its backlog filled: the kernel drops further SYNs, so a connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        result = run(tcp_check(TcpCheck(host="127.0.0.1", port=port, timeoutSeconds=0.3)))
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert (result.ok, result.message) == (False, "no answer within 0.3 s")


def test_expected_text():
    assert expected_text([]) == "a 2xx status"
    assert expected_text([200]) == "status 200"
    assert expected_text([200, 204]) == "status 200 or 204"


def test_a_check_never_raises_on_a_bad_header_value():
    async def go():
        site = await Site().start()
        try:
            return await http_check_session(site.url, {"X-Bad": "line\r\nbreak"})
        finally:
            await site.stop()

    result = run(go())
    assert result.ok is False and result.message  # an answer, not an exception


async def http_check_session(url: str, headers: dict[str, str]) -> CheckResult:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        return await http_check(session, HttpCheck(url=url), headers)


# ---------------------------------------------------------------- the address guard (no metadata service)


def test_the_default_guard_denies_the_cloud_metadata_addresses_only():
    from supercheck.checks import AddressGuard, DeniedAddress
    from supercheck.config import DEFAULT_MONITOR_DENIED_CIDRS

    guard = AddressGuard(DEFAULT_MONITOR_DENIED_CIDRS)
    for address in ("169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "fe80::1%eth0", "100.100.100.200"):
        with pytest.raises(DeniedAddress, match="denied to monitors"):
            guard.check(address)
    for address in ("127.0.0.1", "10.0.0.1", "8.8.8.8", "::1", "2001:db8::1"):
        guard.check(address)


async def _denied_http(url: str, site: Site, denied: list[str]) -> CheckResult:
    checker = Checker(2, denied)
    try:
        return await checker.http(HttpCheck(url=url), {})
    finally:
        await checker.close()


def test_an_http_check_never_connects_to_a_denied_address_named_or_literal():
    async def scenario():
        site = await Site().start()
        try:
            by_ip = await _denied_http(site.url, site, ["127.0.0.0/8"])
            by_name = await _denied_http(f"http://localhost:{site.port}/", site, ["127.0.0.0/8", "::1/128"])
            allowed = await _denied_http(site.url, site, ["169.254.0.0/16"])
            return by_ip, by_name, allowed, len(site.requests)
        finally:
            await site.stop()

    by_ip, by_name, allowed, requests = run(scenario())
    for result in (by_ip, by_name):
        assert not result.ok and "denied to monitors (SUPERCHECK_MONITOR_DENIED_CIDRS)" in result.message, result
    assert allowed.ok and requests == 1  # only the allowed check reached the site


def test_a_redirect_to_a_denied_address_is_not_followed_there():
    from aiohttp import web

    async def scenario():
        target = await Site().start()  # 127.0.0.1: denied
        async def redirect(_: web.Request) -> web.Response:
            raise web.HTTPFound(f"http://127.0.0.1:{target.port}/")

        app = web.Application()
        app.router.add_get("/", redirect)
        runner = web.AppRunner(app)
        await runner.setup()
        front = web.TCPSite(runner, "127.0.0.2", 0)  # the whole of 127/8 is loopback on Linux
        await front.start()
        port = front._server.sockets[0].getsockname()[1]
        try:
            return await _denied_http(f"http://127.0.0.2:{port}/", target, ["127.0.0.1/32"]), len(target.requests)
        finally:
            await runner.cleanup()
            await target.stop()

    result, reached = run(scenario())
    assert not result.ok and "address 127.0.0.1 is denied" in result.message and reached == 0


def test_a_tcp_check_never_connects_to_a_denied_address():
    async def scenario():
        site = await Site().start()
        checker = Checker(1, ["127.0.0.0/8", "::1/128"])
        try:
            denied = await checker.tcp(TcpCheck(host="localhost", port=site.port))
            allowed = await Checker(1, ["169.254.0.0/16"]).tcp(TcpCheck(host="127.0.0.1", port=site.port))
            return denied, allowed
        finally:
            await checker.close()
            await site.stop()

    denied, allowed = run(scenario())
    assert not denied.ok and "denied to monitors" in denied.message
    assert allowed.ok
