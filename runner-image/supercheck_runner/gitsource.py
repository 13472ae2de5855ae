"""A suite fetched from git inside the runner pod (``testsFrom.git``).

:func:`fetch` runs the ``git`` binary: ``git init``, then a shallow fetch of exactly the revision
asked for (``git fetch --depth 1 origin <revision>``: a branch, a tag or a full commit sha; the
remote's ``HEAD`` when none is given), a detached checkout of ``FETCH_HEAD``, and ``.git`` is
removed. A revision the server will not give by name (an abbreviated sha, or a full sha on a server
speaking git's protocol v0, which refuses unadvertised objects) is looked up in a fetch of every
branch and tag instead.

Credentials (https basic auth, or a token as the password) never reach argv, the URL, a file or a
message: git asks for them through a credential helper defined in its environment
(``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``) that prints the values of two
variables of git's own environment, for the URL's host only. No system or global git config, no
``~/.netrc``, no prompt (``GIT_TERMINAL_PROMPT=0``); only the http, https and git protocols.

What went wrong is an exception of :class:`GitSourceError`, whose ``failure`` the runner reports:

* :class:`GitNetworkError` (``network``, retried): the host cannot be resolved or reached, the
  connection was refused, reset or cut, TLS failed, the server answered 5xx or 429, or git took
  longer than its time;
* :class:`GitUserError` (``validation``): something the TestRun must fix, said so — the URL, the
  credentials, the repository, the revision or the path;
* :class:`GitUnavailable` (``infrastructure``): no ``git`` in the image, or a failure not understood.

:func:`check_request` and :func:`classify` are pure; :func:`fetch` runs git.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from supercheck_contract import FailureClass

# Variables of the pod that reach git: a proxy and the CA bundle the cluster may need. Nothing else
# (a HOME with a .netrc, GIT_* variables, the user's environment) influences the fetch.
PASSED_ENV = ("PATH", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY",
              "all_proxy", "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH")
SCHEMES = ("https", "http", "git")
# When only a password (a token) is given: the user name sent with it. GitHub and GitLab take any.
TOKEN_USERNAME = "x-access-token"
USERNAME_ENV = "SUPERCHECK_GIT_USERNAME"
PASSWORD_ENV = "SUPERCHECK_GIT_PASSWORD"
_HOST_ENV = "SUPERCHECK_GIT_HOST"
MESSAGE_LIMIT = 600

# Answers `git credential fill` (action "get") for the URL's host only, from git's environment: the
# secret is in no argument, file or config value. A redirect to another host gets no credentials.
_CREDENTIAL_HELPER = (
    "!f() { test \"$1\" = get || exit 0; h=; "
    "while IFS= read -r l; do test -z \"$l\" && break; case \"$l\" in host=*) h=${l#host=};; esac; done; "
    f"test \"$h\" = \"${_HOST_ENV}\" || exit 0; "
    f"printf 'username=%s\\npassword=%s\\n' \"${USERNAME_ENV}\" \"${PASSWORD_ENV}\"; }}; f"
)


class GitSourceError(Exception):
    """The suite could not be fetched. ``failure``: how the runner reports it."""

    failure: ClassVar[FailureClass] = FailureClass.INFRASTRUCTURE


class GitNetworkError(GitSourceError):
    """The repository's host could not be reached, or git ran out of time: retryable."""

    failure = FailureClass.NETWORK


class GitUserError(GitSourceError):
    """The URL, the credentials, the repository, the revision or the path is wrong: the message says what to fix."""

    failure = FailureClass.VALIDATION


class GitUnavailable(GitSourceError):
    """No git binary, or git failed in a way not understood (infrastructure: retried)."""

    failure = FailureClass.INFRASTRUCTURE


@dataclass(frozen=True)
class Request:
    url: str
    revision: str  # "" for the remote's HEAD
    path: str  # normalized, relative, "" for the repository's root
    host: str  # the URL's host[:port], as git names it to its credential helper

    @property
    def ref(self) -> str:
        return self.revision or "HEAD"

    def at(self) -> str:
        """``https://host/repo.git at 'v1'`` (or ``at its default branch``), for messages."""
        return f"{self.url} at " + (f"'{self.revision}'" if self.revision else "its default branch (HEAD)")


# A revision git could read as an option or a refspec, or that no ref name can be (git check-ref-format).
_BAD_REVISION = re.compile(r"^-|[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|^/|/$|\.lock$|\.$")
_SHA = re.compile(r"^[0-9a-fA-F]{4,40}$")


def check_request(url: str, revision: str, path: str, *, username: str = "", password: str = "") -> Request:
    """The request as it will be fetched, or :class:`GitUserError` saying what is wrong with it
    (nothing is fetched for a request that cannot be right)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError as exc:
        raise GitUserError(f"testsFrom.git.url is not a URL ({exc})") from None
    if parts.password is not None:
        raise GitUserError("testsFrom.git.url carries a password: remove it from the URL and give it in the "
                           "Secret of testsFrom.git credentials")
    if parts.scheme.lower() not in SCHEMES or not host:
        shown = url if len(url) < 200 else url[:200] + "…"
        raise GitUserError(f"testsFrom.git.url '{shown}' is not an https://, http:// or git:// URL of a repository"
                           + (" (ssh is not supported: use the https URL with a token)" if "@" in url else ""))
    revision = revision.strip()
    if revision and _BAD_REVISION.search(revision):
        raise GitUserError(f"testsFrom.git.revision '{revision}' is not a branch, tag or commit sha")
    if "\n" in username or "\n" in password or "\r" in username or "\r" in password:
        raise GitUserError("the git credentials contain a line break: fix the Secret of testsFrom.git")
    return Request(url=url, revision=revision, path=check_path(path), host=host)


def check_path(path: str) -> str:
    """``testsFrom.git.path`` as a relative path inside the repository ("" for its root); a path
    that is absolute or climbs with ``..`` is refused."""
    raw = path.strip()
    if raw.startswith("/") or raw.startswith("~"):
        raise GitUserError(f"testsFrom.git.path '{path}' is absolute: give the suite's folder relative to the "
                           "repository's root")
    if ".." in raw.replace("\\", "/").split("/"):
        raise GitUserError(f"testsFrom.git.path '{path}' climbs out of the repository with '..': give the suite's "
                           "folder relative to the repository's root")
    normal = posixpath.normpath(raw) if raw else "."
    return "" if normal == "." else normal


# ------------------------------------------------------------------ what git's messages mean

# Matched on git's stderr in the C locale, lower-cased. The first table that matches wins, in this order.
_AUTH = ("authentication failed", "could not read username", "could not read password",
         "returned error: 401", "returned error: 403", "invalid username or password", "access denied:")
_NO_REPO = ("repository not found", "not found: did you run git update-server-info",
            "does not appear to be a git repository", "repository not exported", "returned error: 404",
            "no such repository", "not a git repository", "returned error: 410")
_NO_REPO_RE = re.compile(r"repository '[^']*' not found")
_NO_REVISION = ("couldn't find remote ref", "not our ref", "unadvertised object", "no such remote ref",
                "invalid refspec", "is not a valid ref")
_TLS = ("ssl certificate problem", "server certificate verification failed", "certificate verify failed",
        "unable to get local issuer certificate", "self signed certificate", "self-signed certificate")
_NETWORK = ("could not resolve host", "unable to look up", "failed to connect", "connection refused",
            "couldn't connect to server", "unable to connect", "connection timed out", "operation timed out",
            "timed out", "connection reset", "network is unreachable", "no route to host",
            "the remote end hung up", "early eof", "recv failure", "send failure", "empty reply from server",
            "returned error: 5", "returned error: 429", "temporary failure in name resolution",
            "gnutls_handshake", "ssl_connect", "ssl_error_syscall", "transfer closed", "rpc failed",
            "name or service not known")


def classify(stderr: str, request: Request) -> GitSourceError:
    """What a failed ``git fetch`` said, as the error the runner reports (pure)."""
    text = stderr.lower()
    detail = _last_lines(stderr)
    if any(s in text for s in _AUTH):
        return GitUserError(f"authentication failed for {request.url}: check the username and the password "
                            f"or token in the Secret of testsFrom.git, and that they may read the repository "
                            f"(git: {detail})")
    if any(s in text for s in _NO_REPO) or _NO_REPO_RE.search(text):
        return GitUserError(f"repository {request.url} not found (or the credentials given may not read it): "
                            f"check testsFrom.git.url and its credentials (git: {detail})")
    if any(s in text for s in _NO_REVISION):
        return GitUserError(_no_revision(request))
    if any(s in text for s in _TLS):  # network, as k6's TLS failures are (docs/runner.md, Network failures)
        return GitNetworkError(f"the TLS certificate of {request.host} does not verify (git: {detail}): a network "
                               "failure is retried; if it persists, use a URL whose certificate the runner trusts")
    if any(s in text for s in _NETWORK):
        return GitNetworkError(f"could not reach {request.url}: {detail}")
    return GitUnavailable(f"git could not fetch {request.at()}: {detail or 'no message'}")


def _no_revision(request: Request) -> str:
    if not request.revision:
        return (f"{request.url} has no default branch (HEAD) to fetch: is the repository empty? "
                "Set testsFrom.git.revision")
    return (f"revision '{request.revision}' not found in {request.url}: give a branch, a tag or a commit sha "
            f"of the repository in testsFrom.git.revision")


def _last_lines(stderr: str, lines: int = 3) -> str:
    kept = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    text = "; ".join(kept[-lines:])
    return text if len(text) <= MESSAGE_LIMIT else "…" + text[-MESSAGE_LIMIT:]


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` without any of ``secrets`` (defence in depth: git is not expected to print them)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# ------------------------------------------------------------------ running git


def git_env(request: Request, home: Path, username: str, password: str,
            environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """git's whole environment: no config but ours, no prompt, English messages, and the
    credentials (when given) for the helper only."""
    environ = os.environ if environ is None else environ
    env = {name: environ[name] for name in PASSED_ENV if name in environ}
    env.setdefault("PATH", os.defpath)
    env.update({
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "LC_ALL": "C", "LANG": "C", "LANGUAGE": "C",
        "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ASKPASS": "", "SSH_ASKPASS": "", "GIT_PROTOCOL_FROM_USER": "0",
    })
    config = [
        ("protocol.allow", "never"),
        *((f"protocol.{scheme}.allow", "always") for scheme in SCHEMES),
        ("core.hooksPath", os.devnull),
        ("core.askPass", ""),
        ("init.defaultBranch", "main"),
        ("advice.detachedHead", "false"),
        ("credential.helper", ""),
    ]
    if username or password:
        config.append(("credential.helper", _CREDENTIAL_HELPER))
        username = username or urlsplit(request.url).username or TOKEN_USERNAME
        env.update({USERNAME_ENV: username, PASSWORD_ENV: password, _HOST_ENV: request.host})
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


@dataclass(frozen=True)
class _Git:
    binary: str
    env: dict[str, str]
    cwd: Path
    deadline: float  # time.monotonic()
    request: Request
    secrets: tuple[str, ...]

    def __call__(self, *args: str) -> tuple[int, str, str]:
        """Run ``git args``; (exit code, stdout, stderr scrubbed of the secrets). Raises
        :class:`GitNetworkError` when the time is up (git and what it started are killed)."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out()
        try:
            proc = subprocess.Popen([self.binary, *args], cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                    start_new_session=True)
        except FileNotFoundError:
            raise GitUnavailable(f"no git binary ('{self.binary}') in the runner image: the suite of "
                                 f"{self.request.url} cannot be fetched") from None
        try:
            out, err = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            # git's helpers (git-remote-https, fetch-pack) hold the pipes too: end the whole group.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise self._timed_out() from None
        return proc.returncode, out, scrub(err, self.secrets)

    def _timed_out(self) -> GitNetworkError:
        return GitNetworkError(f"fetching {self.request.at()} took longer than its time; the host may be "
                               "unreachable or too slow")


def fetch(url: str, revision: str, path: str, dest: Path, *, username: str = "", password: str = "",
          timeout_seconds: float = 300.0, git: str = "git",
          log: Callable[[str], None] | None = None) -> Path:
    """Fetch ``revision`` (default: the remote's HEAD) of the repository at ``url`` into ``dest``
    (emptied first) and return the suite's folder, ``dest/path``.

    Raises :class:`GitUserError`, :class:`GitNetworkError` or :class:`GitUnavailable` (all
    :class:`GitSourceError`); no message contains ``password``."""
    secrets = (password,)
    try:
        request = check_request(url, revision, path, username=username, password=password)
    except GitUserError as exc:
        raise GitUserError(scrub(str(exc), secrets)) from None
    say = log or (lambda _message: None)
    say(f"fetching {request.at()}" + (f", the suite's folder {request.path}" if request.path else ""))
    started = time.monotonic()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="git-home-") as home:
        run = _Git(git, git_env(request, Path(home), username, password), dest, started + timeout_seconds,
                   request, secrets)
        _must(run("init", "--quiet", "--template=", "."), request)
        _must(run("remote", "add", "origin", request.url), request)
        code, _out, err = run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--depth", "1",
                              "origin", f"+{request.ref}:refs/supercheck/fetched")
        if code != 0:
            failure = classify(err, request)
            if not (_SHA.match(request.revision) and isinstance(failure, GitUserError)
                    and any(s in err.lower() for s in _NO_REVISION)):
                raise failure
            # An abbreviated sha, or a server that gives only what it advertises: every branch and tag.
            say(f"'{request.revision}' is not a name {request.url} fetches by: fetching its branches and tags "
                "to find it")
            _must(run("fetch", "--quiet", "--no-tags", "origin", "+refs/heads/*:refs/remotes/origin/*",
                      "+refs/tags/*:refs/tags/*"), request)
            code, _out, _err = run("update-ref", "refs/supercheck/fetched", f"{request.revision}^{{commit}}")
            if code != 0:
                raise GitUserError(_no_revision(request))
        _must(run("checkout", "--quiet", "--detach", "refs/supercheck/fetched^{commit}"), request)
        _code, sha, _err = run("rev-parse", "HEAD")
    shutil.rmtree(dest / ".git", ignore_errors=True)
    suite = suite_folder(dest, request)
    say(f"fetched {request.at()}: commit {sha.strip()} in {time.monotonic() - started:.1f} s; the suite is "
        + (f"its folder {request.path}" if request.path else "the whole repository"))
    return suite


def _must(result: tuple[int, str, str], request: Request) -> None:
    code, _out, err = result
    if code != 0:
        raise classify(err, request)


def suite_folder(checkout: Path, request: Request) -> Path:
    """``checkout/path``, which must be a folder inside the checkout (a link out of it is refused)."""
    root = checkout.resolve()
    target = (checkout / request.path).resolve() if request.path else root
    if target != root and root not in target.parents:
        raise GitUserError(f"testsFrom.git.path '{request.path}' leads out of the repository (through a symbolic "
                           f"link) in {request.at()}")
    if not target.exists():
        raise GitUserError(f"path '{request.path}' not found in {request.at()}: fix testsFrom.git.path (the suite's "
                           "folder, relative to the repository's root)")
    if not target.is_dir():
        raise GitUserError(f"path '{request.path}' in {request.at()} is a file, not a folder: testsFrom.git.path "
                           "names the suite's folder")
    return target
