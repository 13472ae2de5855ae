"""A remote module k6 cannot fetch is the network's fault (exit 15, retried by the operator), not
an invalid script; k6's own errors reach the message as sentences. Real k6, real sockets on
127.0.0.1, a host name under .invalid (which never resolves), a local HTTPS server whose
certificate k6 trusts through SSL_CERT_FILE."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from supercheck_contract import ExitCode, FailureClass

from .conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LOGFMT = ("time=", "level=", "msg=", "hint=", "\\n", "file://", "GoError")


def importing(url: str) -> str:
    return (f"import {{ greet }} from '{url}';\n"
            "export const options = { vus: 1, iterations: 1 };\n"
            "export default function () { greet(); }\n")


def assert_network(run, url: str, cause: str) -> None:
    assert run.exit_code == ExitCode.NETWORK, run.output
    assert run.result.failureClass == FailureClass.NETWORK
    message = run.result.message
    assert message.startswith(f"the remote module {url} could not be fetched: {cause}"), message
    assert "retried with backoff" in message and "vendor the module" in message and "egress" in message
    assert not any(token in message for token in LOGFMT), message


def test_refused_connection_is_network_not_validation(run_runner):
    port = free_port()  # nothing listens there
    url = f"https://127.0.0.1:{port}/k6-summary/0.0.2/index.js"
    run = run_runner("k6", importing(url))
    assert_network(run, url, f"the connection to 127.0.0.1:{port} was refused")
    assert "running k6" not in run.output  # found during validation


def test_unresolvable_host_is_network(run_runner):
    url = "https://jslib.invalid/k6-summary/0.0.2/index.js"
    run = run_runner("k6", importing(url))
    assert_network(run, url, "the host name jslib.invalid could not be resolved (DNS)")


def test_a_module_that_never_answers_is_network(run_runner):
    """Egress dropped (a NetworkPolicy, a firewall): the connection hangs. k6 would wait a minute;
    the runner's validation stops at the deadline and says what it was waiting for."""
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(8)  # never accepted: the handshake completes, TLS never answers
        url = f"https://127.0.0.1:{blackhole.getsockname()[1]}/lib/index.js"
        run = run_runner("k6", importing(url), timeout_seconds=12,
                         settings_env={"SUPERCHECK_TIMEOUT_MARGIN_SECONDS": "4"})
    assert run.exit_code == ExitCode.NETWORK, run.output
    # Within what is left of the 8 s budget (12 s less the 4 s margin) when validation starts.
    assert re.match(rf"k6 inspect did not finish within [5-8] s while the script imports remote modules "
                    rf"\({re.escape(url)}\): they did not answer\. A network failure is retried", run.result.message)
    assert run.seconds < 20


# --- a module server: HTTPS on 127.0.0.1 with a certificate made here --------------------------------


MODULE = b"export function greet() { return 'hello'; }\n"


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "module-server.crt", tmp_path / "module-server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class ModuleServer:
    """Serves MODULE at /lib/index.js the first ``healthy`` times, then answers 503 (a server in trouble)."""

    def __init__(self, tmp_path, healthy: int):
        self.cert, key = self_signed(tmp_path)
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests += 1
                known = self.path.split("?")[0] == "/lib/index.js"  # k6 asks for <url>?_k6=1 first
                ok = known and server.requests <= healthy
                body = MODULE if ok else b"unavailable"
                self.send_response(200 if ok else (503 if known else 404))
                self.send_header("Content-Type", "text/javascript")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def module_server(tmp_path):
    servers = []

    def start(healthy: int) -> ModuleServer:
        servers.append(ModuleServer(tmp_path, healthy))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_a_reachable_module_runs(run_runner, module_server):
    server = module_server(healthy=100)
    run = run_runner("k6", importing(f"{server.url}/lib/index.js"), env={"SSL_CERT_FILE": str(server.cert)})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert server.requests == 2  # once to validate (k6 inspect), once to run


def test_a_module_that_fails_at_start_up_is_network(run_runner, module_server):
    """Fetched for validation, then the server fails when k6 run fetches it again."""
    server = module_server(healthy=1)
    url = f"{server.url}/lib/index.js"
    run = run_runner("k6", importing(url), env={"SSL_CERT_FILE": str(server.cert)})
    assert "validation passed" in run.output and "running k6" in run.output
    assert_network(run, url, "the server answered HTTP 503")


def test_a_missing_module_is_the_script_s_fault(run_runner, module_server):
    server = module_server(healthy=100)
    url = f"{server.url}/lib/nope.js"
    run = run_runner("k6", importing(url), env={"SSL_CERT_FILE": str(server.cert)})
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.message == (f"invalid script: the remote module {url} could not be fetched: "
                                  "the server answered HTTP 404 (not found); check the URL in the script's import")


# --- k6's exit codes, as sentences ----------------------------------------------------------------------


@pytest.mark.parametrize("script, k6_args, exit_code, message", [
    ("import exec from 'k6/execution';\nexport const options = { vus: 1, iterations: 1 };\n"
     "export default function () { exec.test.fail('the order total was wrong'); }\n", [],
     ExitCode.TEST_FAILED,
     "the script marked the test as failed (k6 exit code 110): test marked as failed: the order total was wrong"),
    ("import exec from 'k6/execution';\nexport const options = { vus: 1, iterations: 1 };\n"
     "export default function () { exec.test.abort('the API is down'); }\n", [],
     ExitCode.TEST_FAILED,
     "the script aborted the test (k6 exit code 108): test aborted: the API is down "
     "(in default(), checkout.js line 3, column 45)"),
    ("export const options = { vus: 1, iterations: 1 };\n"
     "export function setup() { throw new Error('cannot log in: token missing'); }\n"
     "export default function () {}\n", [],
     ExitCode.TEST_FAILED,
     "the script threw an exception (k6 exit code 107): Error: cannot log in: token missing "
     "(in setup(), checkout.js line 2, column 33)"),
    ("export default function () {}\n", ["--vus", "2", "--iterations", "1"], ExitCode.VALIDATION,
     "k6 refused the test's options (k6 exit code 104): There were problems with the specified script "
     "configuration: scenario default has configuration errors: the number of iterations (1) can't be less than "
     "the number of VUs (2); fix the script's options or the run's k6Args"),
    ("export default function () {}\n", ["--no-such-flag"], ExitCode.VALIDATION,
     "k6 refused the run's arguments (k6Args): unknown flag: --no-such-flag"),
])
def test_k6_exit_codes_read_as_sentences(run_runner, script, k6_args, exit_code, message):
    run = run_runner("k6", script, k6Args=k6_args, script_name="checkout.js")
    assert run.exit_code == exit_code, run.output
    assert run.result.message == message
