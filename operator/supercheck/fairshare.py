"""Fair share between namespaces: the cluster admin's per-namespace limits, resolved for one namespace.

Runs are created by the teams that share a cluster; without limits one namespace can take every
running slot and every queue place (``priority: 1000``, ``timeoutSeconds: 86400``). The admin sets,
in the operator's configuration (a tenant cannot write it):

* defaults for every namespace: ``SUPERCHECK_NAMESPACE_MAX_RUNNING`` (running slots; a JobRun takes
  its ``parallelism``), ``SUPERCHECK_NAMESPACE_MAX_QUEUED`` (queue places),
  ``SUPERCHECK_NAMESPACE_MAX_PRIORITY`` and ``SUPERCHECK_NAMESPACE_MAX_TIMEOUT_SECONDS``;
* per-namespace overrides, ``SUPERCHECK_NAMESPACE_LIMITS``: a JSON object
  ``{"team-a": {"running": 4, "queued": 50, "maxPriority": 100, "maxTimeoutSeconds": 3600}}``. A key
  left out takes the default; a key set to ``null`` means no limit for that namespace.

Unset means no limit (the behaviour without fair share). The running and queued shares are enforced
by the ledger's Lua scripts in the same atomic step as the global capacity (they receive
:meth:`FairShare.ledger_json`); the priority is clamped and the timeout checked before admission
(:mod:`supercheck.engine.admission`), and the priority again when a wiped ledger is rebuilt
(:mod:`supercheck.repair`), so a run queues where its clamped priority puts it, always.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from supercheck import resubmit

if TYPE_CHECKING:  # config imports NamespaceLimits from here
    from supercheck.config import Settings

PRIORITY_MIN, PRIORITY_MAX = -1000, 1000  # the CRDs' range of spec.priority


class NamespaceLimits(BaseModel):
    """One namespace's entry of SUPERCHECK_NAMESPACE_LIMITS (absent: the default; null: no limit)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    running: int | None = Field(None, ge=1, description="running slots the namespace's runs hold at once")
    queued: int | None = Field(None, ge=0, description="runs of the namespace waiting in the queue")
    maxPriority: int | None = Field(None, ge=PRIORITY_MIN, le=PRIORITY_MAX,
                                    description="a higher spec.priority is lowered to this")
    maxTimeoutSeconds: int | None = Field(None, ge=1, description="a longer spec.timeoutSeconds is refused")


@dataclass(frozen=True)
class Share:
    """The limits that apply to one namespace; None: no limit."""

    running: int | None = None
    queued: int | None = None
    max_priority: int | None = None
    max_timeout_seconds: int | None = None


class FairShare:
    """Every namespace's limits: the defaults, and the namespaces the admin named."""

    def __init__(self, default: Share | None = None, namespaces: Mapping[str, NamespaceLimits] | None = None):
        self.default = default or Share()
        self.namespaces = {ns: self._merge(limits) for ns, limits in (namespaces or {}).items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> FairShare:
        return cls(Share(running=settings.namespace_max_running, queued=settings.namespace_max_queued,
                         max_priority=settings.namespace_max_priority,
                         max_timeout_seconds=settings.namespace_max_timeout_seconds),
                   settings.namespace_limits)

    def _merge(self, limits: NamespaceLimits) -> Share:
        given = limits.model_fields_set
        d = self.default
        return Share(running=limits.running if "running" in given else d.running,
                     queued=limits.queued if "queued" in given else d.queued,
                     max_priority=limits.maxPriority if "maxPriority" in given else d.max_priority,
                     max_timeout_seconds=(limits.maxTimeoutSeconds if "maxTimeoutSeconds" in given
                                          else d.max_timeout_seconds))

    def of(self, namespace: str) -> Share:
        return self.namespaces.get(namespace, self.default)

    def priority(self, namespace: str, priority: int) -> int:
        """The priority the run is queued with: its own, at most its namespace's maximum."""
        cap = self.of(namespace).max_priority
        return priority if cap is None else min(priority, cap)

    def ledger_json(self) -> str:
        """The running and queued shares as the Lua scripts read them (``common.lua``'s ``share_of``):
        ``{"running": n, "queued": n, "namespaces": {"ns": {"running": n, "queued": n}}}``, a limit left
        out where there is none. Only namespaces the admin named are listed: the rest take the default."""
        def entry(s: Share) -> dict[str, int]:
            return {k: v for k, v in (("running", s.running), ("queued", s.queued)) if v is not None}
        return json.dumps({**entry(self.default),
                           "namespaces": {ns: entry(s) for ns, s in sorted(self.namespaces.items())}},
                          separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------- the words a user reads

SETTINGS_HINT = "set by the cluster admin in SUPERCHECK_NAMESPACE_LIMITS or SUPERCHECK_NAMESPACE_MAX_{}"


def queued_share_message(kind: str, namespace: str, queued: int, limit: int, retry_after: int,
                         name: str | None = None) -> str:
    return (f"namespace share exceeded: namespace {namespace!r} already has {queued}/{limit} runs queued "
            f"(the namespace's queued limit, {SETTINGS_HINT.format('QUEUED')}); "
            f"{resubmit.advice(kind, name, retry_after)}")


def running_share_note(namespace: str, running: int, limit: int) -> str:
    return (f"namespace {namespace!r} holds {running}/{limit} running slots (its running limit); "
            "runs of other namespaces may start before it")


def priority_clamped_message(namespace: str, asked: int, given: int) -> str:
    return (f"spec.priority {asked} is above the maximum priority {given} of namespace {namespace!r} "
            f"({SETTINGS_HINT.format('PRIORITY')}); the run is queued with priority {given}")


def timeout_message(namespace: str, asked: int, limit: int) -> str:
    return (f"spec.timeoutSeconds {asked} is above the maximum of {limit}s for namespace {namespace!r} "
            f"({SETTINGS_HINT.format('TIMEOUT_SECONDS')}); lower it")
