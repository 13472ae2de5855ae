"""Who a container runs as, and what else its securityContext asks of the runtime (pure).

Kubernetes' rules, as kubelet and runc apply them:
* ``runAsUser``/``runAsGroup``: the container's own securityContext wins over the pod's; with
  neither, the image's user. The image stand-in here is this machine, whose user is root, so
  that is uid 0 / gid 0 (a real image may name another user: set ``runAsUser`` to get it).
* the process's supplementary groups are the pod's ``supplementalGroups`` plus its ``fsGroup``
  (kubelet adds the fsGroup so the volumes it chowns are the container's).
* ``runAsNonRoot`` with an effective uid of 0 is refused before the container starts, with
  kubelet's words (``CreateContainerConfigError``).
* ``allowPrivilegeEscalation: false`` is the ``no_new_privs`` bit; ``readOnlyRootFilesystem``
  makes everything but the volumes read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class IdentityError(Exception):
    """The securityContext cannot be honoured (kubelet: CreateContainerConfigError)."""


@dataclass(frozen=True)
class ContainerIdentity:
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()  # supplementary groups
    no_new_privs: bool = False
    read_only_root: bool = False

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def to_json(self) -> dict:
        return {"uid": self.uid, "gid": self.gid, "groups": list(self.groups),
                "noNewPrivs": self.no_new_privs, "readOnlyRoot": self.read_only_root}


ROOT = ContainerIdentity()


def _pick(container_sc: Mapping, pod_sc: Mapping, key: str):
    value = container_sc.get(key)
    return pod_sc.get(key) if value is None else value


def fs_group(pod: Mapping) -> int | None:
    value = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    return None if value is None else int(value)


def container_identity(pod: Mapping, container: Mapping, *, switch_users: bool = True) -> ContainerIdentity:
    """The effective identity of ``container``. ``switch_users=False`` (the agent's escape hatch)
    keeps root and ignores ``runAsNonRoot``, the way the agent ran before it switched users."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    no_new_privs = sc.get("allowPrivilegeEscalation") is False
    read_only_root = bool(sc.get("readOnlyRootFilesystem"))
    if not switch_users:
        return ContainerIdentity(no_new_privs=no_new_privs, read_only_root=read_only_root)
    uid = _pick(sc, pod_sc, "runAsUser")
    gid = _pick(sc, pod_sc, "runAsGroup")
    uid = 0 if uid is None else int(uid)
    # runc: no runAsGroup means the user's primary group in the image (for a uid it does not
    # know, gid 0); the image stand-in knows only root, so gid 0.
    gid = 0 if gid is None else int(gid)
    if _pick(sc, pod_sc, "runAsNonRoot") and uid == 0:
        meta = pod.get("metadata") or {}
        raise IdentityError(
            f'container has runAsNonRoot and image will run as root (pod: "{meta.get("name")}_'
            f'{meta.get("namespace")}({meta.get("uid")})", container: {container.get("name")})')
    groups: list[int] = []
    for g in [*(pod_sc.get("supplementalGroups") or []), fs_group(pod)]:
        if g is not None and int(g) not in groups and int(g) != gid:
            groups.append(int(g))
    return ContainerIdentity(uid, gid, tuple(groups), no_new_privs, read_only_root)


def home_for(identity: ContainerIdentity, env: Mapping[str, str]) -> str | None:
    """HOME for a non-root container that does not set it: runc's fallback for a user the image's
    /etc/passwd does not list is ``/`` (the agent's own HOME, /root, is not theirs)."""
    if identity.is_root or "HOME" in env:
        return None
    return "/"
