"""A run's script snapshot: the ConfigMap ``<run>-script`` its pods mount, taken once, at admission.

Its name is predictable, so a ConfigMap of that name may be there before the operator writes it:
a user's own (created by mistake, or on purpose to have the pods run something else), or the
snapshot of an earlier run of the same name that the garbage collector has not removed yet. The
pods of a run mount only the run's own snapshot — the one whose ``ownerReferences`` name the
run's uid. Any other ends the run ``Error`` (``SnapshotConflict``) with what to rename or delete;
an earlier run's is waited for while the garbage collector is expected to remove it.

A ConfigMap holds at most 1 MiB (the sum of its values, keys not counted). An inline script the
CRD accepts (at most 1,000,000 characters) fits when it is ASCII; one whose UTF-8 bytes, or a
JobRun's tests together, pass that limit ends ``Error`` (``SnapshotRejected``) before any pod
with the size in the message, as does a snapshot the API server refuses (a ResourceQuota on
ConfigMaps). Either way the run's slot is released at once.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from supercheck import podspec
from supercheck.clock import parse_iso
from supercheck.engine.run import Body, RunHandle
from supercheck.ports import AlreadyExists, Refused
from supercheck.vocabulary import GROUP, PLURALS, Reason

MAX_CONFIGMAP_BYTES = 1024 * 1024  # the API server's limit on a ConfigMap's data and binaryData together
# How long a run waits for the garbage collector to remove an earlier run's snapshot of its name.
EARLIER_SNAPSHOT_GRACE_SECONDS = 60.0


class NoSnapshot(Exception):
    """The run cannot have its snapshot: it ends Error with ``reason`` and this message."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SnapshotBusy(Exception):
    """The snapshot's name is held by an earlier run's snapshot the garbage collector is removing:
    try again shortly."""


def size_bytes(cm: Mapping[str, Any]) -> int:
    """The bytes a ConfigMap's values take, as the API server counts them (binaryData decoded)."""
    total = sum(len(str(v).encode()) for v in (cm.get("data") or {}).values())
    for v in (cm.get("binaryData") or {}).values():
        try:
            total += len(base64.b64decode(str(v), validate=True))
        except (binascii.Error, ValueError):
            total += len(str(v))
    return total


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def _earlier_run(obj: Mapping[str, Any], run: RunHandle) -> str | None:
    """The uid of an earlier run of this kind and name that owns ``obj``, if one does."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == run.kind and ref.get("name") == run.name and ref.get("uid") != run.uid:
            return str(ref.get("uid"))
    return None


def _other_owner(obj: Mapping[str, Any]) -> str | None:
    """``TestRun 'x'`` when a run (of Supercheck's API group) controls ``obj``."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if str(ref.get("apiVersion") or "").startswith(f"{GROUP}/") and ref.get("kind") in PLURALS:
            return f"{ref.get('kind')} {ref.get('name')!r}"
    return None


def check(run: RunHandle, obj: Mapping[str, Any]) -> None:
    """Return when ``obj`` is the run's own snapshot; raise :class:`SnapshotBusy` while an earlier
    run's is expected to go, :class:`NoSnapshot` for anything else."""
    if owned_by(obj, run.uid):
        return
    name = podspec.configmap_name(run.name)
    earlier = _earlier_run(obj, run)
    if earlier is not None:
        created = parse_iso((run.body().get("metadata") or {}).get("creationTimestamp"))
        age = (run.eng.clock.now() - created).total_seconds() if created else 0.0
        if age < EARLIER_SNAPSHOT_GRACE_SECONDS:
            raise SnapshotBusy(f"ConfigMap {name!r} is the snapshot of an earlier {run.kind} {run.name!r} "
                               f"(uid {earlier}); waiting for the garbage collector to remove it")
        raise NoSnapshot(Reason.SNAPSHOT_CONFLICT, (
            f"ConfigMap {name!r}, where the operator keeps this {run.kind}'s script snapshot, still holds the "
            f"snapshot of an earlier {run.kind} {run.name!r} (uid {earlier}) after "
            f"{EARLIER_SNAPSHOT_GRACE_SECONDS:g}s; delete ConfigMap {name!r}, then create the {run.kind} again"))
    owner = _other_owner(obj)
    if owner is not None:  # a run of the other kind with this name (a TestRun and a JobRun share it)
        raise NoSnapshot(Reason.SNAPSHOT_CONFLICT, (
            f"ConfigMap {name!r}, where the operator keeps this {run.kind}'s script snapshot, is the snapshot of "
            f"{owner}; give the {run.kind} another name, then create it again"))
    raise NoSnapshot(Reason.SNAPSHOT_CONFLICT, (
        f"ConfigMap {name!r} already exists and is not this {run.kind}'s: the operator keeps each run's script "
        f"in a ConfigMap named <name>-script, owned by the run, and never mounts another one; rename or delete "
        f"ConfigMap {name!r}, or give the {run.kind} another name, then create it again"))


async def ensure(run: RunHandle, cm: Body) -> Body:
    """Create the run's snapshot ``cm`` (or find it, created by an earlier step); the snapshot.

    Raises :class:`NoSnapshot` (too large, refused, a ConfigMap of its name that is not the run's)
    and :class:`SnapshotBusy`."""
    name = cm["metadata"]["name"]
    size = size_bytes(cm)
    if size > MAX_CONFIGMAP_BYTES:
        raise NoSnapshot(Reason.SNAPSHOT_REJECTED, (
            f"the {run.kind}'s script files take {size} bytes (UTF-8), more than the {MAX_CONFIGMAP_BYTES} bytes "
            f"(1 MiB) of the ConfigMap {name!r} the operator keeps them in; make the script smaller"
            + (", or take the tests from git (testsFrom.git)" if run.kind == "JobRun" else "")))
    kube = run.eng.kube
    try:
        return await kube.create(cm)
    except Refused as exc:
        raise NoSnapshot(Reason.SNAPSHOT_REJECTED, (
            f"the API server refused the {run.kind}'s script snapshot, ConfigMap {name!r} ({exc.status}): "
            f"{exc}")) from exc
    except AlreadyExists:
        existing = await kube.get_configmap(run.namespace, name)
        if existing is None:  # removed in between (an earlier run's, collected): take it next step
            raise SnapshotBusy(f"ConfigMap {name!r} was removed while the snapshot was taken") from None
        check(run, existing)
        return existing


async def current(run: RunHandle) -> Body:
    """The run's own snapshot as it is now, for a pod about to mount it. Raises :class:`NoSnapshot`
    when it was deleted or is someone else's, :class:`SnapshotBusy` while an earlier run's goes."""
    name = podspec.configmap_name(run.name)
    found = await run.eng.kube.get_configmap(run.namespace, name)
    if found is None:
        raise NoSnapshot(Reason.CONFIGMAP_NOT_FOUND, (
            f"the {run.kind}'s script snapshot, ConfigMap {name!r}, was deleted; create the {run.kind} again"))
    check(run, found)
    return found
