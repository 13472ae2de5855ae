"""The runner pods' NetworkPolicy, kept in every namespace before a runner pod starts there.

Runs live in their users' namespaces, which the operator learns only when a run appears, so the
policy cannot be rendered once by the chart: the operator creates it (or brings it back to the
configured rules) before the first runner pod of a namespace, once per process and namespace.
A namespace where it cannot be kept gets no runner pod: the error propagates and the run's step
is retried, so a pod never starts without its policy.
"""

from __future__ import annotations

import logging

from supercheck import netpolicy
from supercheck.engine.context import Engine
from supercheck.ports import AlreadyExists

log = logging.getLogger(__name__)


async def ensure_runner_network_policy(eng: Engine, namespace: str) -> None:
    if not eng.settings.runner_network_policy or namespace in eng.network_policies:
        return
    want = netpolicy.runner_network_policy(namespace, eng.settings)
    try:
        await eng.kube.create(want)
        log.info("created NetworkPolicy %s/%s for runner pods", namespace, netpolicy.POLICY_NAME)
    except AlreadyExists:
        existing = await eng.kube.get_network_policy(namespace, netpolicy.POLICY_NAME)
        if existing is not None and not netpolicy.is_current(existing, want):
            want["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            await eng.kube.replace_network_policy(want)
            log.info("brought NetworkPolicy %s/%s back to the configured rules", namespace, netpolicy.POLICY_NAME)
    eng.network_policies.add(namespace)
