"""The lifecycle conditions (Completed, Succeeded, Ready, Stalled) and observedGeneration, as the
Kubernetes API conventions have them, on every status the engine writes; ReferencesResolved turns
True when a late reference appears. Pure functions and the engine on in-memory ports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from engine_kit import K6, result, run, world
from lifecycle_kit import GENERATION, lifecycle_jobruns, lifecycle_testruns

from supercheck import transitions as tr
from supercheck.engine import jobrun
from supercheck.jobmodels import JobRunStatus
from supercheck.models import TestRunStatus
from supercheck_contract import ExitCode, FailureClass

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=30)


def by_type(status: dict) -> dict[str, dict]:
    return {c["type"]: c for c in status["conditions"]}


def test_set_condition_moves_the_transition_time_only_with_the_status_and_stamps_the_generation():
    first = tr.set_condition([], "Ready", "False", "Queued", "waiting", NOW, generation=1)
    assert first == [{"type": "Ready", "status": "False", "reason": "Queued", "message": "waiting",
                      "lastTransitionTime": "2030-01-01T12:00:00.000000Z", "observedGeneration": 1}]
    reason_only = tr.set_condition(first, "Ready", "False", "Running", "running", LATER)
    assert reason_only[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert (reason_only[0]["reason"], reason_only[0]["observedGeneration"]) == ("Running", 1)
    flipped = tr.set_condition(reason_only, "Ready", "True", "Passed", "done", LATER, generation=2)
    assert flipped[0]["lastTransitionTime"] != first[0]["lastTransitionTime"]
    assert flipped[0]["observedGeneration"] == 2


@pytest.mark.parametrize("phase,completed,succeeded,ready,stalled", [
    ("Pending", "False", "Unknown", "False", "False"),
    ("Queued", "False", "Unknown", "False", "False"),
    ("Running", "False", "Unknown", "False", "False"),
    ("Uploading", "False", "Unknown", "False", "False"),
    ("Passed", "True", "True", "True", "False"),
    ("Failed", "True", "False", "False", "True"),
    ("Error", "True", "False", "False", "True"),
    ("TimedOut", "True", "False", "False", "True"),
    ("Rejected", "True", "False", "False", "True"),
    ("Cancelled", "True", "False", "False", "True"),
])
def test_the_lifecycle_conditions_of_each_phase(phase, completed, succeeded, ready, stalled):
    got = {t: (s, r) for t, s, r, _ in tr.lifecycle_conditions(phase, "SomeReason", "what happened")}
    assert {t: s for t, (s, _) in got.items()} == {"Completed": completed, "Succeeded": succeeded,
                                                   "Ready": ready, "Stalled": stalled}
    assert got["Completed"][1] == phase  # the reason is the phase, ended or not
    assert got["Succeeded"][1] == ("SomeReason" if completed == "True" else phase)


def test_with_lifecycle_keeps_the_patchs_own_conditions_and_stamps_the_generation():
    status = {"phase": "Queued", "reason": "Queued", "message": "waiting",
              "conditions": tr.set_condition([], "Admitted", "True", "Queued", "admitted", NOW, generation=1)}
    status = {**status, **tr.with_lifecycle({}, status, 1, NOW)}
    patch = tr.with_lifecycle(status, {"phase": "Failed", "reason": "TestsFailed", "message": "1 failed"}, 2, LATER)
    cond = by_type(patch)
    assert patch["observedGeneration"] == 2
    assert set(cond) == {"Admitted", "Completed", "Succeeded", "Ready", "Stalled"}
    assert all(c["observedGeneration"] == 2 for c in cond.values())
    assert (cond["Completed"]["status"], cond["Completed"]["reason"]) == ("True", "Failed")
    assert (cond["Succeeded"]["reason"], cond["Succeeded"]["message"]) == ("TestsFailed", "1 failed")
    assert cond["Ready"]["lastTransitionTime"] == by_type(status)["Ready"]["lastTransitionTime"]  # False before
    assert cond["Completed"]["lastTransitionTime"] == "2030-01-01T12:00:30.000000Z"


@pytest.mark.parametrize("kind", ["TestRun", "JobRun"])
def test_every_status_the_engine_writes_follows_the_conventions(kind):
    objects = lifecycle_testruns() if kind == "TestRun" else lifecycle_jobruns()
    model = TestRunStatus if kind == "TestRun" else JobRunStatus
    for phase, obj in objects.items():
        st = obj["status"]
        model.model_validate(st)  # reason required: the schema the CRD is generated from
        assert st["phase"] == phase and st["observedGeneration"] == GENERATION
        cond = by_type(st)
        assert len(cond) == len(st["conditions"])  # one of each type
        for c in cond.values():
            assert c["reason"] and c["observedGeneration"] == GENERATION and c["lastTransitionTime"], c
        ended = phase in {"Passed", "Failed", "Error", "Rejected"}
        assert cond["Completed"]["status"] == ("True" if ended else "False")
        assert cond["Completed"]["reason"] == phase
        assert cond["Succeeded"]["status"] == ("True" if phase == "Passed" else "False" if ended else "Unknown")


def test_completed_comes_in_the_same_write_as_the_terminal_phase():
    """No reader ever sees a terminal phase with Completed=False: the engine's writes, one by one."""
    async def go():
        w = world()
        seen: list[tuple[str, str]] = []
        patch_status = w.kube.patch_status

        async def recording(namespace, name, status, rv, plural="testruns"):
            out = await patch_status(namespace, name, status, rv, plural)
            st = out["status"]
            seen.append((st["phase"], by_type(st)["Completed"]["status"]))
            return out
        w.kube.patch_status = recording  # type: ignore[method-assign]
        w.kube.add_testrun("a", K6)
        await w.settle("a")
        w.kube.pod_running("a-a1")
        await w.settle("a")
        w.kube.pod_terminated("a-a1", 0, result(FailureClass.NONE, ExitCode.PASSED), reason="Completed")
        await w.settle("a")
        assert ("Passed", "True") in seen
        assert all((ph in {"Passed", "Failed", "Error"}) == (done == "True") for ph, done in seen), seen
    run(go)


def test_a_testruns_late_configmap_turns_references_resolved_true():
    async def go():
        w = world()
        w.kube.add_testrun("cm", {"type": "k6", "script": {"configMapRef": {"name": "scripts", "key": "s.js"}}})
        await w.settle("cm")
        assert by_type(w.status("cm"))["ReferencesResolved"]["status"] == "False"
        w.kube.add({"kind": "ConfigMap", "metadata": {"name": "scripts", "namespace": "ns"}, "data": {"s.js": "x"}})
        w.clock.advance(2)
        await w.settle("cm")
        st = w.status("cm")
        assert st["phase"] == "Pending" and st["reason"] == "Starting" and w.pod_names() == ["cm-a1"]
        cond = by_type(st)["ReferencesResolved"]
        assert (cond["status"], cond["reason"]) == ("True", "Resolved")
        assert by_type(st)["Admitted"]["status"] == "True"  # the later patch kept it
    run(go)


def test_a_jobruns_late_suite_turns_references_resolved_true():
    async def go():
        w = world(running_capacity=4)
        w.kube.add_jobrun("j", {"type": "k6", "testsFrom": {"configMapRef": {"name": "suite"}}, "parallelism": 1})

        async def settle() -> None:
            for _ in range(20):
                if await jobrun.step(w.handle("j", "JobRun")) != 0.0:
                    return
        await settle()
        assert by_type(w.kube.jobrun("j")["status"])["ReferencesResolved"]["status"] == "False"
        w.kube.add({"kind": "ConfigMap", "metadata": {"name": "suite", "namespace": "ns"},
                    "data": {"a.test.js": "x"}})
        w.clock.advance(2)
        await settle()
        st = w.kube.jobrun("j")["status"]
        assert st["phase"] == "Running"
        cond = by_type(st)["ReferencesResolved"]
        assert (cond["status"], cond["reason"]) == ("True", "Resolved")
    run(go)
