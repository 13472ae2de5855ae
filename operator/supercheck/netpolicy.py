"""The runner pods' NetworkPolicy, built by a pure function over the settings.

A runner pod runs a script its author wrote: it should reach the systems under test and its
artifact store, not the operator's Redis and PostgreSQL, other tenants' pods, or the cloud's
instance-metadata service (the node's credentials). One policy per namespace that runs runner
pods selects them by the labels the operator always sets (:func:`supercheck.podspec.run_labels`,
which a run's own labels cannot override): no ingress at all; egress only to DNS and to the
configured rules (RUNNER_EGRESS). The operator keeps it in each namespace before its first runner
pod there (:mod:`supercheck.engine.isolation`), so a namespace that starts running tests later is
covered without a chart change.

NetworkPolicy is enforced by the cluster's network plugin; without one (the local environment)
the API server stores it and nothing enforces it.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from supercheck.config import Settings
from supercheck.vocabulary import LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGER

POLICY_NAME = "supercheck-runner-egress"
RUNNER_POD_LABELS = {LABEL_MANAGED_BY: MANAGER, LABEL_COMPONENT: "runner"}
ANYWHERE = ("0.0.0.0/0", "::/0")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _net(cidr: str) -> Network:
    return ipaddress.ip_network(cidr, strict=False)


def _cut(block: dict[str, Any], excluded: Sequence[Network]) -> dict[str, Any] | None:
    """``block`` (an ipBlock) with every excluded network inside it added to ``except``; None when
    the block lies wholly inside an excluded network (it would allow only what must not be reached)."""
    cidr = _net(block["cidr"])
    excepts = list(block.get("except") or [])
    for bad in excluded:
        if bad.version != cidr.version:
            continue
        if cidr.subnet_of(bad):  # type: ignore[arg-type]  # same version, checked above
            return None
        if bad.subnet_of(cidr) and not any(bad.subnet_of(_net(e)) for e in excepts  # type: ignore[arg-type]
                                           if _net(e).version == bad.version):
            excepts.append(str(bad))
    out = dict(block)
    if excepts:
        out["except"] = excepts
    return out


def guard_rule(rule: dict[str, Any], excluded: Sequence[Network]) -> dict[str, Any] | None:
    """An egress rule that reaches no excluded address: every ipBlock that contains one gets an
    ``except`` for it, and a rule with no ``to`` (which Kubernetes reads as *every* destination)
    is spelled out as 0.0.0.0/0 and ::/0 with those exceptions. Pod and namespace selectors select
    pods, never the metadata address, and are kept as they are. None: nothing of the rule is left."""
    rule = copy.deepcopy(rule)
    peers = rule.get("to") or [{"ipBlock": {"cidr": c}} for c in ANYWHERE]
    kept: list[dict[str, Any]] = []
    for peer in peers:
        if "ipBlock" not in peer:
            kept.append(peer)
            continue
        block = _cut(peer["ipBlock"], excluded)
        if block is not None:
            kept.append({**peer, "ipBlock": block})
    if not kept:
        return None
    rule["to"] = kept
    return rule


def egress_rules(settings: Settings) -> list[dict[str, Any]]:
    """DNS first, then the configured destinations, each guarded against the excluded CIDRs."""
    excluded = [_net(c) for c in settings.runner_egress_excluded_cidrs]
    rules: Iterable[dict[str, Any] | None] = (guard_rule(r, excluded)
                                               for r in [*settings.runner_dns_egress, *settings.runner_egress])
    return [r for r in rules if r is not None]


def runner_network_policy(namespace: str, settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": POLICY_NAME,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGER},
        },
        "spec": {
            "podSelector": {"matchLabels": dict(RUNNER_POD_LABELS)},
            # Both types, no ingress rules: nothing may connect to a runner (k6's REST API, a debugger).
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": egress_rules(settings),
        },
    }


def normalised(spec: dict[str, Any]) -> dict[str, Any]:
    """A policy spec as the API server stores it: a port's protocol defaults to TCP, an empty rule
    list is dropped. Two specs equal after this allow the same traffic."""
    out = copy.deepcopy(spec)
    for direction in ("ingress", "egress"):
        if not out.get(direction):
            out.pop(direction, None)
            continue
        for rule in out[direction]:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
    return out


def is_current(existing: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether the stored policy allows what the operator would write now (nobody loosened it, the
    configured rules did not change)."""
    return normalised(existing.get("spec") or {}) == normalised(want["spec"])
