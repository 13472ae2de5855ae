"""Kopf's last-handled-configuration annotation of a run holds nothing, whatever the run holds: a
copy of a 1,000,000-character script (or many labels and annotations) would pass the 256 KiB all
annotations share, every patch of Kopf's would fail with 422, and the finalizer could never be
removed (the issue's "Large scripts")."""

from __future__ import annotations

import kopf
from kopf._cogs.structs import patches

from supercheck.handlers import diffbase_storage

ANNOTATIONS_LIMIT = 256 * 1024


def test_the_diffbase_of_a_run_at_every_limit_is_empty():
    body = kopf.Body({
        "apiVersion": "supercheck.io/v1alpha1", "kind": "TestRun",
        "metadata": {"name": "big", "namespace": "ns", "uid": "u1",
                     "labels": {f"team.example.com/l{i}": "v" * 63 for i in range(500)},
                     "annotations": {"notes": "n" * 200_000}},
        "spec": {"type": "k6", "script": {"inline": "x" * 1_000_000}},
        "status": {"phase": "Running"},
    })
    storage = diffbase_storage()
    essence = storage.build(body=body, extra_fields=[])
    assert essence == {}
    patch = patches.Patch()
    storage.store(body=body, patch=patch, essence=essence)
    written = patch["metadata"]["annotations"]
    assert written["supercheck.io/last-handled-configuration"] == "{}\n"
    assert sum(len(k) + len(v) for k, v in written.items()) < 1024 < ANNOTATIONS_LIMIT
    # What was stored is what Kopf reads back: no change is ever seen, so no patch grows it.
    stored = kopf.Body({**body, "metadata": {**body["metadata"], "annotations": {**written}}})
    assert storage.fetch(body=stored) == storage.build(body=stored, extra_fields=[])
