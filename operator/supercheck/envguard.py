"""The keys an ``envFrom`` source would bring into a runner's environment, checked before a run starts.

The CRD refuses a reserved name in ``env`` and an ``envFrom`` prefix that could make one
(:mod:`supercheck_contract.reserved`), but without a prefix every key of the ConfigMap or Secret
becomes a variable, and those keys are only known once the operator reads the object. So before a
run is admitted (and each time a JobRun is), the operator reads each such source and refuses the run
when a key is a reserved name, naming only those keys: the other keys of a Secret stay unsaid.

A key added after this check (the object edited while the run waits for its pod) is not seen
here; docs/security.md says why that gains a script nothing it does not already have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from supercheck.models import EnvFromSource
from supercheck.ports import Kube
from supercheck_contract.reserved import reserved_keys


def unprefixed_sources(env_from: Sequence[EnvFromSource]) -> list[tuple[str, str, str]]:
    """(kind, name, where) of each source whose keys become variables as they are."""
    out: list[tuple[str, str, str]] = []
    for i, source in enumerate(env_from):
        if source.prefix:
            continue  # the CRD (and the model) refuse a prefix that could make a reserved name
        if source.secretRef is not None:
            out.append(("Secret", source.secretRef.name, f"spec.envFrom[{i}].secretRef"))
        if source.configMapRef is not None:
            out.append(("ConfigMap", source.configMapRef.name, f"spec.envFrom[{i}].configMapRef"))
    return out


def object_keys(obj: Mapping[str, Any]) -> list[str]:
    return sorted({**(obj.get("data") or {}), **(obj.get("binaryData") or {})})


def refusal(kind: str, name: str, where: str, keys: Sequence[str]) -> str:
    return (f"{kind} {name!r} referenced by {where} without a prefix has keys that are names the runner "
            f"reserves ({', '.join(keys)}; docs/security.md lists them): rename those keys, or set "
            "envFrom[].prefix (e.g. APP_)")


async def reserved_env_from(kube: Kube, namespace: str, env_from: Sequence[EnvFromSource]) -> str | None:
    """Why the run's ``envFrom`` is refused (its first source with a reserved key), or None.

    An absent source is left to the reference check (:func:`supercheck.podspec.env_references`)."""
    for kind, name, where in unprefixed_sources(env_from):
        obj = await (kube.get_configmap if kind == "ConfigMap" else kube.get_secret)(namespace, name)
        if obj is None:
            continue
        keys = reserved_keys(object_keys(obj))
        if keys:
            return refusal(kind, name, where, keys)
    return None
