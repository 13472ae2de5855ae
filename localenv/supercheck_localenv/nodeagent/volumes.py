"""Pod volumes: what each one contains (pure) and writing it under the agent's state dir.

A volume becomes a directory ``<state>/pods/<uid>/volumes/<name>`` that containers see
at their ``mountPath`` through a bind mount (see ``mounts.py``). Supported: emptyDir,
configMap, secret, downwardAPI, projected (configMap, secret, downwardAPI,
serviceAccountToken) and hostPath. Contents are written once when the pod starts; only
service account tokens are refreshed afterwards (kubelet also refreshes ConfigMaps and
Secrets; runner pods are short-lived and do not need it).

Ownership and modes are kubelet's, so a container running as a non-root user can do with its
volumes exactly what it could in a real pod: an emptyDir is mode 0777; with the pod's
``fsGroup`` every file of an emptyDir, configMap, secret, downwardAPI or projected volume
belongs to that group, with group read (and write, for an emptyDir) added and the setgid bit on
directories (``SetVolumeOwnership``). Files keep their ``defaultMode``/``mode`` otherwise: a
secret at 0400 without an fsGroup is root's alone, as it is on a real node.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .envvars import EnvError, ObjectSnapshot, configmap_data, field_ref_value, resource_ref_value, secret_data

DEFAULT_MODE = 0o644  # the API's default defaultMode (420)
EMPTY_DIR_MODE = 0o777  # kubelet makes every emptyDir world-writable (fsGroup then adds setgid)
RW_MASK, RO_MASK, EXEC_MASK = 0o660, 0o440, 0o110  # kubelet's volume_linux.go
TOKEN_DEFAULT_EXPIRATION = 3600


class VolumeError(Exception):
    """A volume cannot be set up yet (kubelet: FailedMount); the agent retries."""


@dataclass(frozen=True)
class TokenSource:
    """A projected serviceAccountToken, keyed the way TokenRequests are made."""

    audience: str
    expiration_seconds: int


@dataclass
class FileSet:
    """A volume whose files the agent writes: path relative to the volume -> (content, mode)."""

    files: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    read_only: bool = True  # configMap, secret, downwardAPI and projected are read-only in Kubernetes


@dataclass(frozen=True)
class EmptyDir:
    read_only: bool = False


@dataclass(frozen=True)
class HostPath:
    path: str
    type: str = ""
    read_only: bool = False


VolumePlan = FileSet | EmptyDir | HostPath


def token_sources(pod: Mapping) -> list[TokenSource]:
    out: list[TokenSource] = []
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        for src in (vol.get("projected") or {}).get("sources") or []:
            sat = src.get("serviceAccountToken")
            if sat:
                ts = TokenSource(sat.get("audience") or "",
                                 int(sat.get("expirationSeconds") or TOKEN_DEFAULT_EXPIRATION))
                if ts not in out:
                    out.append(ts)
    return out


def _keyed_files(kind: str, name: str, data: Mapping[str, bytes] | None, items, default_mode: int,
                 optional: bool) -> dict[str, tuple[bytes, int]]:
    if data is None:
        if optional:
            return {}
        raise VolumeError(f'{kind.lower()} "{name}" not found')
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    files: dict[str, tuple[bytes, int]] = {}
    for item in items:
        key = item["key"]
        if key not in data:
            if optional:
                continue
            raise VolumeError(f"{kind} {name!r} has no key {key!r} (referenced by an item)")
        mode = item.get("mode")
        files[item["path"]] = (data[key], default_mode if mode is None else int(mode))
    return files


def _downward_files(pod: Mapping, items, default_mode: int,
                    allocatable: Mapping[str, str]) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {}
    for item in items or []:
        try:
            if item.get("fieldRef"):
                value = field_ref_value(pod, item["fieldRef"]["fieldPath"])
            elif item.get("resourceFieldRef"):
                ref = item["resourceFieldRef"]
                value = resource_ref_value(pod, ref.get("containerName", ""), ref, allocatable)
            else:
                continue
        except EnvError as exc:
            raise VolumeError(f"downwardAPI item {item.get('path')!r}: {exc}") from None
        mode = item.get("mode")
        files[item["path"]] = (value.encode(), default_mode if mode is None else int(mode))
    return files


def _object_data(objects: ObjectSnapshot, kind: str, name: str) -> dict[str, bytes] | None:
    if kind == "ConfigMap":
        cm = objects.configmap(name)
        return None if cm is None else configmap_data(cm)
    sec = objects.secret(name)
    return None if sec is None else secret_data(sec)


def render_volume(volume: Mapping, pod: Mapping, objects: ObjectSnapshot,
                  tokens: Mapping[TokenSource, str], allocatable: Mapping[str, str]) -> VolumePlan:
    """What a volume holds. Raises :class:`VolumeError` for what cannot be set up (yet)."""
    name = volume.get("name", "")
    if "emptyDir" in volume:
        return EmptyDir()
    if volume.get("hostPath"):
        hp = volume["hostPath"]
        return HostPath(hp["path"], hp.get("type") or "")
    if volume.get("configMap"):
        src = volume["configMap"]
        mode = src.get("defaultMode", DEFAULT_MODE)
        return FileSet(_keyed_files("ConfigMap", src["name"], _object_data(objects, "ConfigMap", src["name"]),
                                    src.get("items"), mode, bool(src.get("optional"))))
    if volume.get("secret"):
        src = volume["secret"]
        mode = src.get("defaultMode", DEFAULT_MODE)
        return FileSet(_keyed_files("Secret", src["secretName"],
                                    _object_data(objects, "Secret", src["secretName"]),
                                    src.get("items"), mode, bool(src.get("optional"))))
    if volume.get("downwardAPI"):
        src = volume["downwardAPI"]
        return FileSet(_downward_files(pod, src.get("items"), src.get("defaultMode", DEFAULT_MODE), allocatable))
    if volume.get("projected"):
        proj = volume["projected"]
        mode = proj.get("defaultMode", DEFAULT_MODE)
        files: dict[str, tuple[bytes, int]] = {}
        for src in proj.get("sources") or []:
            if src.get("configMap"):
                s = src["configMap"]
                files.update(_keyed_files("ConfigMap", s["name"], _object_data(objects, "ConfigMap", s["name"]),
                                          s.get("items"), mode, bool(s.get("optional"))))
            elif src.get("secret"):
                s = src["secret"]
                files.update(_keyed_files("Secret", s["name"], _object_data(objects, "Secret", s["name"]),
                                          s.get("items"), mode, bool(s.get("optional"))))
            elif src.get("downwardAPI"):
                files.update(_downward_files(pod, src["downwardAPI"].get("items"), mode, allocatable))
            elif src.get("serviceAccountToken"):
                sat = src["serviceAccountToken"]
                key = TokenSource(sat.get("audience") or "",
                                  int(sat.get("expirationSeconds") or TOKEN_DEFAULT_EXPIRATION))
                if key not in tokens:
                    raise VolumeError(f"no service account token for volume {name!r} (audience {key.audience!r})")
                files[sat["path"]] = (tokens[key].encode(), mode)
            else:
                kinds = sorted(k for k in src if src[k])
                raise VolumeError(f"volume {name!r}: projected source {kinds} is not supported by the node agent")
        return FileSet(files)
    kinds = sorted(k for k in volume if k != "name")
    raise VolumeError(f"volume {name!r}: type {kinds} is not supported by the node agent "
                      "(supported: emptyDir, configMap, secret, downwardAPI, projected, hostPath)")


# ---------------------------------------------------------------- on disk


def set_volume_ownership(directory: Path, fs_group: int, read_only: bool) -> None:
    """kubelet's ``SetVolumeOwnership``: every file and folder to group ``fs_group``, group read
    (and write unless the volume is read-only) added, setgid and group search on folders."""
    mask = RO_MASK if read_only else RW_MASK

    def own(path: str, is_dir: bool) -> None:
        os.lchown(path, -1, fs_group)
        if os.path.islink(path):  # kubelet leaves a symlink's mode alone
            return
        mode = os.lstat(path).st_mode & 0o7777
        os.chmod(path, mode | mask | ((stat.S_ISGID | EXEC_MASK) if is_dir else 0))

    for root, dirs, files in os.walk(directory):  # does not descend into symlinked folders
        own(root, True)
        for name in files:
            own(os.path.join(root, name), False)
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):
                own(os.path.join(root, name), False)


def write_files(directory: Path, files: Mapping[str, tuple[bytes, int]], fs_group: int | None = None) -> None:
    """Write (or rewrite) a FileSet: each file replaced atomically, so readers never see half a token."""
    directory.mkdir(parents=True, exist_ok=True)
    for rel, (content, mode) in files.items():
        target = directory / rel
        if directory.resolve() not in target.resolve().parents:
            raise VolumeError(f"volume file path {rel!r} escapes the volume")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(content)
        os.chmod(tmp, mode & 0o7777)
        if fs_group is not None:
            os.chown(tmp, -1, fs_group)
            os.chmod(tmp, (mode & 0o7777) | RO_MASK)
        os.replace(tmp, target)
    if fs_group is not None:
        set_volume_ownership(directory, fs_group, read_only=True)


def materialize(plan: VolumePlan, directory: Path, fs_group: int | None = None) -> Path:
    """Create the volume on disk, owned as kubelet would own it; returns the host path to bind-mount."""
    if isinstance(plan, HostPath):
        path = Path(plan.path)
        if plan.type in ("DirectoryOrCreate",) and not path.exists():
            path.mkdir(parents=True, exist_ok=True)
        elif plan.type == "FileOrCreate" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        elif plan.type in ("Directory", "File", "Socket", "CharDevice", "BlockDevice") and not path.exists():
            raise VolumeError(f"hostPath {plan.path} does not exist (type {plan.type})")
        return path
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(plan, FileSet):
        write_files(directory, plan.files, fs_group)
    else:
        os.chmod(directory, EMPTY_DIR_MODE)
        if fs_group is not None:
            set_volume_ownership(directory, fs_group, read_only=False)
    return directory


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
