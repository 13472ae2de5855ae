"""One step of a run, whatever its kind, guarded against the services it talks to being away:
a conflicting write is read again, a wiped ledger is rebuilt first, Redis or the API server away
means waiting (the run is never decided on a guess)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from supercheck.engine import Step
from supercheck.engine.ledger_repair import rebuild_ledger
from supercheck.engine.run import RunHandle
from supercheck.ports import ApiUnavailable, Conflict, LedgerUnavailable, NeedsRebuild


async def guarded(run: RunHandle, decide: Callable[[], Awaitable[Step]],
                  ledger_down: Callable[[LedgerUnavailable], Awaitable[Step]]) -> Step:
    """Run ``decide``; ``ledger_down`` says what the run shows while Redis cannot be reached.

    :class:`supercheck.ports.StoreUnavailable` passes through: only a provisional write raises
    it, and the caller retries."""
    eng = run.eng
    try:
        return await decide()
    except Conflict:
        await run.refresh()
        return 0.0
    except NeedsRebuild:
        await rebuild_ledger(eng)
        return 0.0
    except LedgerUnavailable as exc:
        eng.metrics.service_errors.labels("redis").inc()
        return await ledger_down(exc)
    except ApiUnavailable as exc:
        eng.metrics.service_errors.labels("kubernetes").inc()
        run.log.warning("API server unavailable: %s", exc)
        return eng.settings.service_retry_seconds
