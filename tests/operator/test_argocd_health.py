"""The Argo CD health check (charts/supercheck/files/argocd-health.lua) run by a real Lua
interpreter, as Argo CD runs it: the live object as the global `obj`, the script's return value
`hs` with `status` and `message`. Lua 5.1 is the dialect of Argo CD's interpreter (gopher-lua);
5.4 shows nothing newer is needed. The objects are the engine's own (lifecycle_kit)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from lifecycle_kit import GENERATION, lifecycle_jobruns, lifecycle_testruns
from lupa import lua51, lua54

from supercheck_localenv.layout import REPO_ROOT

SCRIPT = (REPO_ROOT / "charts" / "supercheck" / "files" / "argocd-health.lua").read_text()
EXPECTED = {"Pending": "Progressing", "Queued": "Progressing", "Running": "Progressing", "Passed": "Healthy",
            "Failed": "Degraded", "Error": "Degraded", "Rejected": "Degraded"}
RUNTIMES = {"lua5.1": lua51.LuaRuntime, "lua5.4": lua54.LuaRuntime}


def health(obj: dict[str, Any], runtime: str = "lua5.1") -> tuple[str, str]:
    lua = RUNTIMES[runtime](unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(SCRIPT)
    return hs["status"], hs["message"]


@pytest.fixture(scope="module")
def objects() -> dict[str, dict[str, dict[str, Any]]]:
    return {"TestRun": lifecycle_testruns(), "JobRun": lifecycle_jobruns()}


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("kind", ["TestRun", "JobRun"])
def test_health_follows_the_phase(objects, kind, runtime):
    got = {phase: health(obj, runtime)[0] for phase, obj in objects[kind].items()}
    assert got == EXPECTED


def test_the_message_says_the_phase_and_the_outcome(objects):
    assert health(objects["TestRun"]["Running"])[1].startswith("Running: attempt 1: runner pod running-a1")
    assert health(objects["TestRun"]["Failed"])[1] == "Failed: 1 of 2 checks failed"
    assert health(objects["JobRun"]["Failed"])[1].startswith("Failed (0/1 passed, 1 failed): ")
    assert health(objects["TestRun"]["Error"])[1].startswith("Error: ConfigMap 'scripts'")


def test_a_run_the_operator_has_not_written_yet_is_progressing(objects):
    fresh = {k: v for k, v in objects["TestRun"]["Passed"].items() if k != "status"}
    assert health(fresh) == ("Progressing", "waiting for the Supercheck operator")


def test_a_spec_edited_after_the_operator_acted_is_progressing(objects):
    edited = objects["TestRun"]["Passed"]
    edited["metadata"]["generation"] = GENERATION + 1
    status, message = health(edited)
    assert status == "Progressing" and f"generation {GENERATION + 1}" in message


def test_the_docs_carry_the_script_as_it_is():
    """docs/operator.md shows the argocd-cm entries with the script: the same text, line for line."""
    doc = (REPO_ROOT / "docs" / "operator.md").read_text()
    blocks = re.findall(r"supercheck\.io_(TestRun|JobRun): \|\n((?:      .*\n|\n)+)", doc)
    assert {kind for kind, _ in blocks} == {"TestRun", "JobRun"}
    for _, block in blocks:
        text = "\n".join(line[6:] for line in block.rstrip("\n").split("\n")) + "\n"
        assert text == SCRIPT
