"""Kopf keeps no last-handled-configuration of a run: a copy of a 1,000,000-character script (or many
labels and annotations) would pass the 256 KiB all annotations share, every patch of Kopf's would fail
with 422, and the finalizer could never be removed (the issue's "Large scripts"); and writing it cost
every new run one PATCH (and a conflict with its first status write), building it a deep copy of the
run at every event. Kopf reads every run as handled and unchanged: its NOOP cause, while a deletion is
still its DELETE cause (by the deletion timestamp), so the finalizer's handler runs."""

from __future__ import annotations

import kopf
from kopf._cogs.structs import patches

from supercheck.handlers import diffbase_storage


def big_run(**metadata) -> kopf.Body:
    return kopf.Body({
        "apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun",
        "metadata": {"name": "big", "namespace": "ns", "uid": "u1",
                     "labels": {f"team.example.com/l{i}": "v" * 63 for i in range(500)},
                     "annotations": {"notes": "n" * 200_000}, **metadata},
        "spec": {"type": "k6", "script": {"inline": "x" * 1_000_000}},
        "status": {"phase": "Running"},
    })


def test_nothing_is_built_or_written_whatever_the_run_holds():
    body = big_run()
    storage = diffbase_storage()
    essence = storage.build(body=body, extra_fields=[])
    assert essence == {}
    patch = patches.Patch()
    storage.store(body=body, patch=patch, essence=essence)
    assert not patch  # no annotation, no marker: no PATCH of Kopf's for it
    assert storage.fetch(body=body) == {}  # a run never read before is "handled" too


def causes(body: kopf.Body, event_type: str = "MODIFIED"):
    from kopf._cogs.structs import diffs
    from kopf._core.intents import causes as kcauses  # what Kopf's processing calls on every event

    storage = diffbase_storage()
    old, new = storage.fetch(body=body), storage.build(body=body)
    return kcauses.detect_changing_cause(
        finalizer="supercheck.io/finalizer", raw_event={"type": event_type, "object": dict(body)}, body=body,
        old=old, new=new, diff=diffs.diff(old, new), initial=False, logger=None, patch=patches.Patch(),
        memo=None, resource=None, indices=None)


def test_kopf_sees_a_new_run_as_unchanged_and_a_deleted_one_as_deleted():
    from kopf._core.intents.causes import Reason

    assert causes(big_run()).reason == Reason.NOOP  # not CREATE: no handler, no diff-base write
    deleting = big_run(deletionTimestamp="2026-11-29T00:00:00Z", finalizers=["supercheck.io/finalizer"])
    assert causes(deleting).reason == Reason.DELETE  # the finalizer's handler (cancel) runs
