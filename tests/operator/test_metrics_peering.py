"""``supercheck_operator_active`` follows Kopf's own peering decisions (the alert on no active replica)."""

from __future__ import annotations

import asyncio
import datetime
import logging

import kopf
from kopf._cogs.aiokits import aiotoggles
from kopf._core.engines import peering

from supercheck.config import Settings
from supercheck.metrics import KOPF_PEERING_LOGGER, Metrics


def active(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("supercheck_operator_active") or 0.0


def peering_event(**peers: int) -> dict:
    now = datetime.datetime.now(datetime.UTC).isoformat()
    status = {identity: {"priority": prio, "lifetime": 60, "lastseen": now} for identity, prio in peers.items()}
    return {"type": "MODIFIED", "object": {"metadata": {"name": "supercheck"}, "status": status}}


async def kopf_decides(event: dict, conflicts: aiotoggles.Toggle) -> None:
    """Kopf's real handler of a peering object's change, as its watcher calls it for this replica."""
    settings = kopf.OperatorSettings()
    settings.peering.name = "supercheck"
    settings.peering.priority = 10
    woken = asyncio.Event()
    woken.set()  # no wait for the other peers to expire (and no keep-alive patch to the cluster)
    await peering.process_peering_event(
        raw_event=event, namespace=None, resource=None, identity="me", settings=settings,  # type: ignore[arg-type]
        autoclean=False, stream_pressure=woken, conflicts_found=conflicts)


def test_a_peered_replica_is_active_only_while_kopf_has_not_paused_it():
    metrics = Metrics(Settings())
    level = logging.getLogger(KOPF_PEERING_LOGGER).level
    metrics.follow_peering(standalone=False)
    try:
        assert active(metrics) == 0  # Kopf starts a peered operator paused, until it reads the peers
        conflicts = aiotoggles.Toggle(True)
        asyncio.run(kopf_decides(peering_event(me=10), conflicts))
        assert conflicts.is_off() and active(metrics) == 1  # alone: resumed
        asyncio.run(kopf_decides(peering_event(me=10, older=20), conflicts))
        assert conflicts.is_on() and active(metrics) == 0  # an older replica (higher priority) is alive
        asyncio.run(kopf_decides(peering_event(me=10), conflicts))
        assert active(metrics) == 1  # it has gone
        asyncio.run(kopf_decides(peering_event(me=10, twin=10), conflicts))
        assert active(metrics) == 0  # the same priority: Kopf pauses both
    finally:
        for handler in list(logging.getLogger(KOPF_PEERING_LOGGER).handlers):  # the next test's replica
            logging.getLogger(KOPF_PEERING_LOGGER).removeHandler(handler)
        logging.getLogger(KOPF_PEERING_LOGGER).setLevel(level)


def test_a_standalone_replica_is_always_active():
    metrics = Metrics(Settings())
    metrics.follow_peering(standalone=True)
    assert active(metrics) == 1
    assert not logging.getLogger(KOPF_PEERING_LOGGER).handlers
