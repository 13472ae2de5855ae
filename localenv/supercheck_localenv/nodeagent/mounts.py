"""Which host paths a container sees where: the bind mounts made in its mount namespace.

Pure: from the container spec and the host directories of the pod's volumes, a list of
:class:`BindMount` in the order to mount them (parents before children), ending with the
per-attempt termination message file at ``terminationMessagePath``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from .envvars import expand

DEFAULT_TERMINATION_PATH = "/dev/termination-log"


@dataclass(frozen=True)
class BindMount:
    source: str  # host path (a directory, or a file for subPath files and the termination log)
    target: str  # absolute path as the container sees it
    read_only: bool = False

    def to_json(self) -> dict:
        return {"source": self.source, "target": self.target, "readOnly": self.read_only}


@dataclass(frozen=True)
class HostVolume:
    path: str  # where the volume lives on the host
    read_only: bool = False  # forced read-only (configMap, secret, downwardAPI, projected)


class MountError(Exception):
    pass


def _depth(path: str) -> int:
    return len([p for p in posixpath.normpath(path).split("/") if p])


def container_mounts(container: Mapping, volumes: Mapping[str, HostVolume], termination_file: str,
                     env: Mapping[str, str] | None = None) -> list[BindMount]:
    """Bind mounts for one container. ``subPathExpr`` expands ``$(VAR)`` from ``env``."""
    mounts: list[BindMount] = []
    for vm in container.get("volumeMounts") or []:
        vol = volumes.get(vm["name"])
        if vol is None:
            raise MountError(f"volumeMount {vm['name']!r} refers to no volume of the pod")
        target = vm["mountPath"]
        if not posixpath.isabs(target):
            raise MountError(f"mountPath {target!r} must be absolute")
        sub = vm.get("subPath") or ""
        if vm.get("subPathExpr"):
            sub = expand(vm["subPathExpr"], env or {})
        sub = sub.strip("/")
        if sub and (".." in sub.split("/")):
            raise MountError(f"subPath {sub!r} must not contain '..'")
        source = posixpath.join(vol.path, sub) if sub else vol.path
        mounts.append(BindMount(source, posixpath.normpath(target), bool(vm.get("readOnly")) or vol.read_only))
    mounts.sort(key=lambda m: _depth(m.target))  # stable: same depth keeps spec order
    term_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
    mounts.append(BindMount(termination_file, term_path, False))
    return mounts


def subpath_sources(container: Mapping, volumes: Mapping[str, HostVolume],
                    env: Mapping[str, str] | None = None) -> list[str]:
    """subPath sources that kubelet creates (as directories) when they do not exist yet."""
    out = []
    for m in container_mounts(container, volumes, "/dev/null", env)[:-1]:
        vol_paths = {v.path for v in volumes.values()}
        if m.source not in vol_paths:
            out.append(m.source)
    return out
