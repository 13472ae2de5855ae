"""A suite fetched from git in the runner pod (``supercheck_runner.gitsource``).

The pure parts (what a request may be, what git's messages mean, git's environment) run in
``make unit``. The rest fetch from real git servers on loopback (``git_kit``): ``git daemon``
(git://) and ``git http-backend`` behind a Basic-auth HTTP server (http://), and are marked
``integration``; the last ones run the real runner on a k6 test fetched with credentials.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from supercheck_contract import BUCKETS, ExitCode, FailureClass
from supercheck_runner import gitsource
from supercheck_runner.gitsource import GitNetworkError, GitSourceError, GitUnavailable, GitUserError

from . import git_kit
from .conftest import read_json

PASSWORD = "s3cr3t-Pa55word-4-git"  # distinctive: no message may contain it
USERNAME = "tester"

integration = pytest.mark.integration


# ---------------------------------------------------------------- pure: the request


@pytest.mark.parametrize("path, expected", [
    ("", ""), (".", ""), ("./", ""), ("suite", "suite"), ("suite/", "suite"), ("./a//b/", "a/b"),
    ("  suite/e2e ", "suite/e2e"),
])
def test_a_relative_path_is_normalized(path, expected):
    assert gitsource.check_path(path) == expected


@pytest.mark.parametrize("path", ["..", "../x", "a/../../b", "a/..", "/etc", "/", "~/suite", "a\\..\\..\\b"])
def test_a_path_out_of_the_repository_is_refused_before_anything_is_fetched(path, tmp_path):
    with pytest.raises(GitUserError, match="testsFrom.git.path"):
        gitsource.check_path(path)
    # fetch refuses it without running git (a git that does not exist would say so otherwise).
    with pytest.raises(GitUserError, match="testsFrom.git.path"):
        gitsource.fetch("https://example.com/r.git", "", path, tmp_path / "git", git="/nonexistent/git")


@pytest.mark.parametrize("url", ["ssh://git@example.com/r.git", "git@example.com:team/r.git", "file:///srv/r.git",
                                 "/srv/r.git", "ext::sh -c touch% /tmp/x", "-upload-pack=x", "https://", ""])
def test_only_http_https_and_git_urls_are_fetched(url):
    with pytest.raises(GitUserError, match="is not an https://, http:// or git:// URL"):
        gitsource.check_request(url, "", "")


def test_a_url_carrying_a_password_is_refused_without_repeating_it(tmp_path):
    with pytest.raises(GitUserError) as caught:
        gitsource.fetch(f"https://{USERNAME}:{PASSWORD}@example.com/r.git", "", "", tmp_path / "git",
                        git="/nonexistent/git")
    assert "carries a password" in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("revision", ["-upload-pack=touch /tmp/x", "--depth=1", "a b", "main:refs/x", "a..b",
                                      "HEAD~1", "v1^{}", "x@{1}", "feat*", "ends.lock", "trailing/"])
def test_a_revision_git_could_misread_is_refused(revision):
    with pytest.raises(GitUserError, match="is not a branch, tag or commit sha"):
        gitsource.check_request("https://example.com/r.git", revision, "")


@pytest.mark.parametrize("revision", ["main", "release/2.x", "v1.2.3", "a" * 40, "abc1234", "feature_x-1", ""])
def test_branches_tags_and_shas_are_accepted(revision):
    assert gitsource.check_request("https://example.com/r.git", revision, "").revision == revision


def test_credentials_with_a_line_break_are_refused_without_repeating_them():
    with pytest.raises(GitUserError) as caught:
        gitsource.check_request("https://example.com/r.git", "", "", username=USERNAME, password=PASSWORD + "\nx")
    assert PASSWORD not in str(caught.value)


def test_the_credentials_are_in_gits_environment_only_for_the_helper(tmp_path):
    request = gitsource.check_request("https://git.example.com:8443/team/r.git", "main", "suite")
    env = gitsource.git_env(request, tmp_path, USERNAME, PASSWORD,
                            environ={"PATH": "/bin", "HOME": "/root", "HTTPS_PROXY": "http://proxy:3128",
                                     "GIT_DIR": "/elsewhere", "SUPERCHECK_GIT_PASSWORD": "from-the-pod"})
    holding = [name for name, value in env.items() if PASSWORD in value]
    assert holding == [gitsource.PASSWORD_ENV]
    assert env[gitsource.USERNAME_ENV] == USERNAME
    assert env["SUPERCHECK_GIT_HOST"] == "git.example.com:8443"
    # No config, prompt or variable of the pod but the proxy's.
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert env["HOME"] == str(tmp_path) and env["HTTPS_PROXY"] == "http://proxy:3128" and "GIT_DIR" not in env
    config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert config["protocol.allow"] == "never" and config["protocol.https.allow"] == "always"
    assert "protocol.file.allow" not in config and "protocol.ext.allow" not in config


def test_a_token_alone_is_sent_with_a_placeholder_user_name(tmp_path):
    request = gitsource.check_request("https://git.example.com/r.git", "", "")
    env = gitsource.git_env(request, tmp_path, "", "a-token", environ={})
    assert env[gitsource.USERNAME_ENV] == gitsource.TOKEN_USERNAME
    no_credentials = gitsource.git_env(request, tmp_path, "", "", environ={})
    assert gitsource.PASSWORD_ENV not in no_credentials


# ---------------------------------------------------------------- pure: what git's messages mean

REQ = gitsource.check_request("https://git.example.com/team/r.git", "nope", "suite")


@pytest.mark.parametrize("stderr, kind, words", [
    ("fatal: Authentication failed for 'https://git.example.com/team/r.git/'", GitUserError,
     "authentication failed for https://git.example.com/team/r.git: check the username"),
    ("fatal: could not read Username for 'https://git.example.com': terminal prompts disabled", GitUserError,
     "authentication failed"),
    ("fatal: unable to access '...': The requested URL returned error: 403", GitUserError, "authentication failed"),
    ("remote: Repository not found.\nfatal: repository 'https://git.example.com/team/r.git/' not found",
     GitUserError, "repository https://git.example.com/team/r.git not found"),
    ("fatal: repository 'https://git.example.com/team/r.git/' not found", GitUserError, "not found"),
    ("fatal: remote error: access denied or repository not exported: /r.git", GitUserError, "not found"),
    ("fatal: couldn't find remote ref nope", GitUserError,
     "revision 'nope' not found in https://git.example.com/team/r.git"),
    ("error: Server does not allow request for unadvertised object 0123abcd", GitUserError, "revision 'nope'"),
    ("fatal: unable to access '...': SSL certificate problem: self-signed certificate", GitNetworkError,
     "TLS certificate of git.example.com does not verify"),
    ("fatal: unable to access '...': Could not resolve host: git.example.com", GitNetworkError, "could not reach"),
    ("fatal: unable to access '...': Failed to connect to git.example.com port 443 after 2 ms: Connection refused",
     GitNetworkError, "Connection refused"),
    ("fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused", GitNetworkError,
     "errno=Connection refused"),
    ("fatal: unable to access '...': The requested URL returned error: 503", GitNetworkError, "error: 503"),
    ("fatal: the remote end hung up unexpectedly\nfatal: early EOF", GitNetworkError, "could not reach"),
    ("fatal: something new", GitUnavailable, "git could not fetch https://git.example.com/team/r.git at 'nope': "
                                             "fatal: something new"),
])
def test_gits_messages_are_classed(stderr, kind, words):
    error = gitsource.classify(stderr, REQ)
    assert type(error) is kind
    assert words in str(error)


def test_each_class_has_its_failure_class():
    assert GitUserError.failure == FailureClass.VALIDATION
    assert GitNetworkError.failure == FailureClass.NETWORK
    assert GitUnavailable.failure == FailureClass.INFRASTRUCTURE


def test_an_empty_repository_has_no_default_branch():
    request = gitsource.check_request("https://git.example.com/r.git", "", "")
    assert "has no default branch (HEAD)" in str(gitsource.classify("fatal: couldn't find remote ref HEAD", request))


def test_no_git_binary_is_infrastructure(tmp_path):
    with pytest.raises(GitUnavailable, match="no git binary"):
        gitsource.fetch("https://example.com/r.git", "", "", tmp_path / "git", git=str(tmp_path / "no-git"))


# ---------------------------------------------------------------- real servers


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> git_kit.Repo:
    return git_kit.make_repo(tmp_path_factory.mktemp("repos"))


@pytest.fixture(scope="module")
def daemon(repo):
    with git_kit.git_daemon(repo.root) as url:
        yield url


@pytest.fixture(scope="module")
def http(repo):
    with git_kit.GitHttpServer(repo.root, USERNAME, PASSWORD) as server:
        yield server


class Source:
    """One server and how to fetch from it."""

    def __init__(self, base: str, username: str = "", password: str = ""):
        self.base = base
        self.username = username
        self.password = password

    def url(self, name: str = "repo.git") -> str:
        return f"{self.base}/{name}"

    def fetch(self, dest: Path, revision: str = "", path: str = "", *, url: str | None = None,
              timeout_seconds: float = 30, **credentials) -> Path:
        kwargs = {"username": self.username, "password": self.password, **credentials}
        return gitsource.fetch(url or self.url(), revision, path, dest, timeout_seconds=timeout_seconds, **kwargs)


@pytest.fixture(params=["git-daemon", "http-basic-auth"])
def source(request) -> Source:
    if request.param == "git-daemon":
        return Source(request.getfixturevalue("daemon"))
    return Source(request.getfixturevalue("http").url, USERNAME, PASSWORD)


def version(folder: Path) -> str:
    return (folder / "suite" / "version.txt").read_text().strip()


@integration
@pytest.mark.parametrize("revision, expected", [
    ("", "main"), ("main", "main"), ("feature", "feature"), ("v1", "v1"), ("v1-light", "v1"),
])
def test_a_branch_a_tag_or_the_default_head_is_fetched(source, tmp_path, revision, expected):
    dest = tmp_path / "git"
    folder = source.fetch(dest, revision)
    assert folder == dest.resolve()
    assert version(folder) == expected
    assert not (dest / ".git").exists()  # nothing of git is left for the suite's files
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "escape", "inside", "k6", "suite"]


@integration
@pytest.mark.parametrize("which", ["v1", "main", "feature"])
def test_a_full_commit_sha_is_fetched(source, repo, tmp_path, which):
    assert version(source.fetch(tmp_path / "git", repo.shas[which])) == which


@integration
def test_an_abbreviated_sha_is_found_among_the_branches_and_tags(source, repo, tmp_path):
    said = []
    folder = gitsource.fetch(source.url(), repo.shas["v1"][:9], "", tmp_path / "git", username=source.username,
                             password=source.password, timeout_seconds=30, log=said.append)
    assert version(folder) == "v1"
    assert any("fetching its branches and tags" in line for line in said)
    assert f"commit {repo.shas['v1']}" in said[-1]


@integration
def test_a_sha_from_a_server_that_refuses_unadvertised_objects_is_found_too(repo, tmp_path):
    # Protocol v0 (the Git-Protocol header not passed on): "Server does not allow request for unadvertised object".
    with git_kit.GitHttpServer(repo.root, USERNAME, PASSWORD, protocol_v2=False) as server:
        folder = gitsource.fetch(f"{server.url}/repo.git", repo.shas["v1"], "suite", tmp_path / "git",
                                 username=USERNAME, password=PASSWORD, timeout_seconds=30)
    assert (folder / "version.txt").read_text() == "v1\n"


@integration
def test_the_suite_is_the_folder_path_names(source, tmp_path):
    dest = tmp_path / "git"
    folder = source.fetch(dest, "feature", "suite/")
    assert folder == (dest / "suite").resolve()
    assert (folder / "version.txt").read_text() == "feature\n"
    nested = source.fetch(tmp_path / "again", "", "k6/lib")
    assert [p.name for p in nested.iterdir()] == ["site.js"]


@integration
def test_a_link_inside_the_repository_is_followed(source, tmp_path):
    assert (source.fetch(tmp_path / "git", "", "inside") / "version.txt").read_text() == "main\n"


@integration
def test_a_path_through_a_link_out_of_the_repository_is_refused(source, tmp_path):
    with pytest.raises(GitUserError, match="'escape' leads out of the repository"):
        source.fetch(tmp_path / "git", "", "escape")
    with pytest.raises(GitUserError, match="leads out of the repository"):
        source.fetch(tmp_path / "git", "", "escape/tmp")


@integration
def test_the_destination_is_emptied_first(source, tmp_path):
    dest = tmp_path / "git"
    (dest / "suite").mkdir(parents=True)
    (dest / "suite" / "stale.txt").write_text("from before")
    assert sorted(p.name for p in (source.fetch(dest, "", "suite")).iterdir()) == ["version.txt"]


@integration
def test_an_unknown_revision_says_which_and_where(source, tmp_path):
    with pytest.raises(GitUserError) as caught:
        source.fetch(tmp_path / "git", "nope")
    assert str(caught.value).startswith(f"revision 'nope' not found in {source.url()}: ")
    with pytest.raises(GitUserError, match="revision 'deadbeef' not found"):  # hex: looked for, not found
        source.fetch(tmp_path / "git", "deadbeef")


@integration
def test_a_missing_path_says_which_and_where(source, tmp_path):
    with pytest.raises(GitUserError) as caught:
        source.fetch(tmp_path / "git", "v1", "tests/e2e")
    assert str(caught.value).startswith(f"path 'tests/e2e' not found in {source.url()} at 'v1': fix testsFrom.git.path")
    with pytest.raises(GitUserError, match="'README.md' .* is a file, not a folder"):
        source.fetch(tmp_path / "git", "", "README.md")


@integration
def test_an_unknown_repository_is_not_found(source, tmp_path):
    with pytest.raises(GitUserError, match=f"repository {source.url('nothere.git')} not found"):
        source.fetch(tmp_path / "git", url=source.url("nothere.git"))


@integration
def test_an_empty_repository_has_no_default_branch_to_fetch(source, tmp_path):
    with pytest.raises(GitUserError, match="has no default branch"):
        source.fetch(tmp_path / "git", url=source.url("empty.git"))


# ---------------------------------------------------------------- credentials


@integration
def test_the_credentials_are_asked_for_and_given_once_the_server_wants_them(http, tmp_path):
    http.seen.clear()
    Source(http.url, USERNAME, PASSWORD).fetch(tmp_path / "git", "main", "suite")
    assert http.seen[0][2] is False  # the first request carries nothing
    assert all(ok for _method, _path, ok in http.seen[1:])


@integration
@pytest.mark.parametrize("username, password", [
    (USERNAME, PASSWORD + "-wrong"), ("someone-else", PASSWORD), ("", "a-token-the-server-does-not-know"),
])
def test_wrong_credentials_are_a_clear_error_without_the_password(http, tmp_path, username, password):
    with pytest.raises(GitUserError) as caught:
        gitsource.fetch(f"{http.url}/repo.git", "main", "", tmp_path / "git", username=username, password=password,
                        timeout_seconds=30)
    message = str(caught.value)
    assert message.startswith(f"authentication failed for {http.url}/repo.git: check the username and the password")
    assert password not in message and PASSWORD not in message


@integration
def test_no_credentials_for_a_server_that_wants_them_is_an_authentication_error(http, tmp_path):
    with pytest.raises(GitUserError, match="authentication failed"):
        gitsource.fetch(f"{http.url}/repo.git", "", "", tmp_path / "git", timeout_seconds=30)


@integration
def test_no_message_contains_the_password(http, tmp_path):
    """Every failure met with the right password (and the wrong one) over http, once more by message."""
    source = Source(http.url, USERNAME, PASSWORD)
    failures = [
        lambda: source.fetch(tmp_path / "a", "nope"),
        lambda: source.fetch(tmp_path / "b", "", "nowhere"),
        lambda: source.fetch(tmp_path / "c", "", "escape"),
        lambda: source.fetch(tmp_path / "d", url=source.url("nothere.git")),
        lambda: source.fetch(tmp_path / "e", password=PASSWORD + "x"),
        lambda: source.fetch(tmp_path / "f", url=f"http://127.0.0.1:{git_kit.free_port()}/repo.git"),
        lambda: source.fetch(tmp_path / "g", "", "../x"),
    ]
    for fail in failures:
        with pytest.raises(GitSourceError) as caught:
            fail()
        assert PASSWORD not in str(caught.value), str(caught.value)


# ---------------------------------------------------------------- the network


@integration
@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_port_nobody_listens_on_is_a_network_failure(tmp_path, scheme):
    url = f"{scheme}://127.0.0.1:{git_kit.free_port()}/repo.git"
    with pytest.raises(GitNetworkError) as caught:
        gitsource.fetch(url, "main", "", tmp_path / "git", username=USERNAME, password=PASSWORD, timeout_seconds=30)
    assert caught.value.failure == FailureClass.NETWORK
    assert str(caught.value).startswith(f"could not reach {url}: ")
    assert any(words in str(caught.value) for words in ("Connection refused", "Couldn't connect to server"))


@integration
@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_server_that_never_answers_is_a_network_failure_after_the_timeout(tmp_path, scheme):
    with git_kit.silent_server() as port:
        started = time.monotonic()
        with pytest.raises(GitNetworkError, match="took longer than its time"):
            gitsource.fetch(f"{scheme}://127.0.0.1:{port}/repo.git", "", "", tmp_path / "git", timeout_seconds=2)
    assert 1.9 < time.monotonic() - started < 10


# ---------------------------------------------------------------- the runner


@pytest.fixture
def run_from_git(run_runner, http):
    """The real runner on a suite of the http server's repository, with the credentials as the
    operator passes them (the Secret's values in SUPERCHECK_GIT_USERNAME / _PASSWORD)."""

    def run(kind: str, *, revision: str = "", path: str = "", password: str = PASSWORD, url: str | None = None,
            env: dict | None = None, **fields):
        return run_runner(kind, None, gitUrl=url or f"{http.url}/repo.git", gitRevision=revision, gitPath=path,
                          env={"SUPERCHECK_GIT_USERNAME": USERNAME, "SUPERCHECK_GIT_PASSWORD": password,
                               **(env or {})}, **fields)

    return run


@integration
@pytest.mark.timeout(300)
def test_the_runner_runs_a_k6_test_fetched_with_credentials(run_from_git, site, s3, repo):
    run = run_from_git("k6", revision="main", path="k6", script_name="checks.js", env={"TARGET_URL": site.url})
    assert run.exit_code == ExitCode.PASSED, run.output
    assert run.result.failureClass == FailureClass.NONE
    assert run.result.k6.checksPassed == 4 and run.result.k6.checksFailed == 0  # 2 iterations x 2 checks
    assert f"commit {repo.shas['main']}" in run.output and "the suite is its folder k6" in run.output
    assert PASSWORD not in run.output and PASSWORD not in run.termination_message
    result = read_json(s3, BUCKETS["k6"], f"{run.config.prefix}/result.json")
    assert PASSWORD not in str(result)


@integration
@pytest.mark.timeout(300)
def test_the_runner_reports_a_wrong_password_as_a_validation_error(run_from_git):
    run = run_from_git("k6", path="k6", script_name="checks.js", password=PASSWORD + "-wrong")
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.failureClass == FailureClass.VALIDATION
    assert run.result.message.startswith("authentication failed for ")
    assert PASSWORD not in run.output and PASSWORD not in run.termination_message


@integration
@pytest.mark.timeout(300)
def test_the_runner_reports_an_unknown_revision_and_a_missing_path_as_validation(run_from_git, http):
    run = run_from_git("k6", revision="nope", path="k6", script_name="checks.js")
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.message.startswith(f"revision 'nope' not found in {http.url}/repo.git")
    run = run_from_git("playwright", path="e2e")
    assert run.exit_code == ExitCode.VALIDATION, run.output
    assert run.result.message.startswith(f"path 'e2e' not found in {http.url}/repo.git")


@integration
@pytest.mark.timeout(300)
def test_the_runner_reports_an_unreachable_repository_as_network(run_from_git):
    run = run_from_git("k6", url=f"http://127.0.0.1:{git_kit.free_port()}/repo.git", script_name="checks.js")
    assert run.exit_code == ExitCode.NETWORK, run.output
    assert run.result.failureClass == FailureClass.NETWORK
    assert run.result.message.startswith("could not reach http://127.0.0.1:")
