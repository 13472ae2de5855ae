"""Webhooks told of a run's end (``spec.notify``), after its verdict is written: a dead webhook
never delays or changes the verdict. Each target is tried once per run (up to 3 tries inside
:func:`supercheck.notify.deliver`); how it went is in ``status.notifications``, the ``Notified``
condition and an Event."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from supercheck import notify
from supercheck import transitions as tr
from supercheck.engine.run import Body, RunHandle
from supercheck.models import TERMINAL_PHASE_NAMES, Condition, Notification, NotifyTarget
from supercheck.vocabulary import ConditionType, EventReason, Reason

TERMINAL = TERMINAL_PHASE_NAMES


async def _url(run: RunHandle, target: NotifyTarget) -> str | None:
    if target.url is not None:
        return target.url
    assert target.urlFrom is not None
    ref = target.urlFrom.secretKeyRef
    secret = await run.eng.kube.get_secret(run.namespace, ref.name)
    raw = ((secret or {}).get("data") or {}).get(ref.key)
    if raw is None:
        return None
    return base64.b64decode(raw).decode("utf-8", "replace").strip()


async def send(run: RunHandle, body: Body, phase: str, targets: Sequence[NotifyTarget],
               done: Sequence[Notification], conditions: Sequence[Condition], payload: dict[str, Any]) -> Body:
    """Deliver to every target due for ``phase`` not yet told; one status patch with how it went."""
    due = [(i, t) for i, t in enumerate(targets) if notify.fires(phase, t.on, terminal_phases=TERMINAL)]
    if not due or len(done) >= len(targets):
        return body
    results = list(done)
    for i, target in enumerate(targets):
        if i < len(results):
            continue
        if (i, target) not in due:
            results.append(Notification(target="-", ok=True, tries=0, message=f"not sent: {phase} is not in on"))
            continue
        url = await _url(run, target)
        if url is None:
            ref = target.urlFrom.secretKeyRef if target.urlFrom else None
            results.append(Notification(target=f"secret {ref.name if ref else '?'}", ok=False, tries=0,
                                        message=f"Secret {ref.name if ref else '?'} has no key "
                                                f"{ref.key if ref else '?'}: not sent"))
            continue
        delivery = await notify.deliver(url, payload)
        results.append(Notification(target=notify.safe_url(url), ok=delivery.ok, tries=delivery.tries,
                                    message=(f"HTTP {delivery.status}" if delivery.ok else delivery.error or
                                             f"HTTP {delivery.status}")[:512]))
        run.eng.metrics.notifications.labels("delivered" if delivery.ok else "failed", *run.extra_labels(body)).inc()
    failed = [n for n in results if not n.ok]
    now = run.eng.clock.now()
    if failed:
        message = "; ".join(f"{n.target}: {n.message}" for n in failed)[:1024]
        condition = tr.set_condition(conditions, ConditionType.NOTIFIED, "False", Reason.NOTIFICATION_FAILED,
                                     message, now)
    else:
        message = f"{sum(1 for n in results if n.tries)} webhook(s) told of {phase}"
        condition = tr.set_condition(conditions, ConditionType.NOTIFIED, "True", Reason.NOTIFIED, message, now)
    body = await run.patch(body, {"notifications": [n.model_dump(mode="json", exclude_none=True) for n in results],
                                  "conditions": condition})
    run.event(body, "Warning" if failed else "Normal",
              EventReason.NOTIFICATION_FAILED if failed else EventReason.NOTIFIED, message)
    return body
