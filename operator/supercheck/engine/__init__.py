"""The run engine: what the operator does for a run, step by step, over its ports.

* :mod:`.context` — what one operator process shares: settings, ports, clock, metrics,
  wake-ups, per-run locks and the ledger gate (:class:`Engine`).
* :mod:`.run` — one run's handle: its newest known body, resourceVersion-checked status
  patches, Events and its pods (:class:`RunHandle`).
* :mod:`.admission` — admit, queue or reject through the capacity ledger; refuse what cannot run.
* :mod:`.attempts` — launch an attempt's pod, observe it, retry by failure class; a pod the API
  server refuses ends the run.
* :mod:`.snapshot` — the run's own script ConfigMap (within 1 MiB, never someone else's).
* :mod:`.uploads` — each runner pod's upload grant, in a Secret of its own while the pod lives.
* :mod:`.results` — release the slot, record rows in PostgreSQL, announce the end, honour the TTL.
* :mod:`.testrun` — a TestRun's step and its cancellation, driving the three units above.
* :mod:`.jobrun` — a JobRun's step and cancellation: all its slots at once, its shards, their
  tests as they end, the merge; :mod:`.jobresults` its rows, webhooks and TTL.
* :mod:`.notifications` — ``spec.notify`` of either kind, after the verdict.
* :mod:`.guard` — what a step does when a service is away (shared by both kinds).
* :mod:`.ledger_repair` — the ledger rebuilt or repaired against the cluster's truth.

Decisions are pure functions elsewhere (:mod:`supercheck.transitions`, :mod:`supercheck.retry`,
:mod:`supercheck.pods`, :mod:`supercheck.podspec`, :mod:`supercheck.repair`); the engine reads,
calls them, and writes. Kopf wiring is in :mod:`supercheck.handlers`.

A step returns the seconds until the next step, :data:`WAIT` (until an event wakes the run)
or ``None`` when there is nothing left to do.
"""

from __future__ import annotations

import math

WAIT = math.inf
Step = float | None
