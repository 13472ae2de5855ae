"""Each runner pod's upload grant: minted and stored as the pod's own Secret before the pod is
created, deleted once the pod has ended.

The grant (:func:`supercheck.grants.mint`) lets the pod POST under its attempt's prefix and GET
exactly ``reads`` until its deadline; the Secret is owned by the run, so whatever the engine does
not delete (an operator restart between a pod's end and the delete) goes with the run.
"""

from __future__ import annotations

from collections.abc import Sequence

from supercheck import grants, podspec
from supercheck.engine.run import Body, RunHandle
from supercheck.ports import AlreadyExists, ApiUnavailable, Refused


async def grant(run: RunHandle, pod: Body, reads: Sequence[str] = ()) -> bool:
    """Create ``pod``'s upload Secret (before the pod: a pod without it cannot start). Idempotent:
    one already there for this run is kept (the pod was already being created). False when a Secret
    of that name belongs to another run of the same name, not yet collected: wait for it to go.
    Raises :class:`supercheck.ports.Refused` (naming the Secret) when the API server refuses it."""
    eng = run.eng
    config = podspec.pod_runner_config(pod)
    minted = grants.mint(eng.settings, config.bucket, config.prefix, podspec.grant_expiry(pod, eng.clock.now()),
                         reads)
    secret = podspec.upload_secret(pod, minted)
    name = secret["metadata"]["name"]
    try:
        await eng.kube.create(secret)
    except Refused as exc:  # a quota or an admission policy on Secrets: the pod could never start
        raise Refused(exc.status, f"Secret {name!r} (the pod's upload grant): {exc}") from exc
    except AlreadyExists:
        existing = await eng.kube.get_secret(run.namespace, name)
        owners = {o.get("uid") for o in ((existing or {}).get("metadata") or {}).get("ownerReferences") or []}
        if existing is not None and run.uid not in owners:
            run.log.warning("Secret %s belongs to another run of this name; waiting for it to go", name)
            return False
    return True


async def revoke(run: RunHandle, pod_name: str | None) -> None:
    """Delete the upload Secret of a pod that has ended, best effort: the presigned policy expires
    on its own, and the run's ownerReference collects the Secret with the run."""
    if not pod_name:
        return
    try:
        await run.eng.kube.delete_secret(run.namespace, podspec.upload_secret_name(pod_name))
    except ApiUnavailable as exc:
        run.log.debug("upload Secret of %s not deleted yet: %s", pod_name, exc)
    except Exception as exc:  # noqa: BLE001 - never a reason to stop driving the run (403: RBAC lacks delete)
        run.log.warning("upload Secret of %s not deleted: %s", pod_name, exc)
