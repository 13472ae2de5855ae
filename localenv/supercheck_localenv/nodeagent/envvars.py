"""A container's environment, resolved the way kubelet resolves it.

Pure functions over plain pod dicts (JSON as served by the API server) and a snapshot of
the ConfigMaps and Secrets the pod refers to, so the rules are unit-tested without a
cluster. The agent fetches the snapshot first (:func:`referenced_objects` says what to
fetch), then calls :func:`container_env`.

What kubelet does and we copy:
* ``envFrom`` first (in order, with ``prefix``), then ``env`` in order; a later name wins;
* ``$(VAR)`` in ``env`` values expands from the variables defined before it and the
  service variables; ``$$`` escapes; an unknown reference stays as written;
* the ``kubernetes`` service variables (``KUBERNETES_SERVICE_HOST``...) are always set;
  here they point at the real API server, so in-cluster clients work on this node;
* a missing non-optional ConfigMap/Secret or key is a ``CreateContainerConfigError``:
  the container waits and the agent retries, it does not fail the pod.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from .quantity import scaled_ceiling

POD_IP = "127.0.0.1"
HOST_IP = "127.0.0.1"


class EnvError(Exception):
    """The container's configuration cannot be built yet (kubelet: CreateContainerConfigError)."""


@dataclass(frozen=True)
class ObjectSnapshot:
    """ConfigMaps and Secrets of the pod's namespace, by name; ``None`` means "not found"."""

    configmaps: Mapping[str, dict | None] = field(default_factory=dict)
    secrets: Mapping[str, dict | None] = field(default_factory=dict)

    def configmap(self, name: str) -> dict | None:
        return self.configmaps.get(name)

    def secret(self, name: str) -> dict | None:
        return self.secrets.get(name)


def configmap_data(cm: Mapping) -> dict[str, bytes]:
    """All keys of a ConfigMap, text and binary, as bytes."""
    out = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out


def secret_data(secret: Mapping) -> dict[str, bytes]:
    """All keys of a Secret as bytes (``stringData`` is folded into ``data`` by the API server)."""
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def _as_text(value: bytes) -> str:
    # surrogateescape round-trips bytes that are not UTF-8 to the process environment unchanged
    return value.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- $(VAR) expansion


def expand(text: str, *mappings: Mapping[str, str]) -> str:
    """Kubelet's ``$(VAR)`` expansion (k8s.io/kubernetes third_party/forked/golang/expansion).

    ``$(NAME)`` is replaced when NAME is defined in one of ``mappings`` (first wins),
    ``$$`` becomes ``$``, and anything else (unknown names, an unclosed ``$(``) stays as written.
    """

    def lookup(name: str) -> str:
        for m in mappings:
            if name in m:
                return m[name]
        return f"$({name})"

    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    out.append(lookup(text[cursor + 2 : close]))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


# ---------------------------------------------------------------- references


def referenced_objects(pod: Mapping) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's env, envFrom and volumes refer to."""
    spec = pod.get("spec") or {}
    cms: set[str] = set()
    secrets: set[str] = set()
    for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
        for src in c.get("envFrom") or []:
            if src.get("configMapRef"):
                cms.add(src["configMapRef"]["name"])
            if src.get("secretRef"):
                secrets.add(src["secretRef"]["name"])
        for var in c.get("env") or []:
            vf = var.get("valueFrom") or {}
            if vf.get("configMapKeyRef"):
                cms.add(vf["configMapKeyRef"]["name"])
            if vf.get("secretKeyRef"):
                secrets.add(vf["secretKeyRef"]["name"])
    for vol in spec.get("volumes") or []:
        if vol.get("configMap"):
            cms.add(vol["configMap"]["name"])
        if vol.get("secret"):
            secrets.add(vol["secret"]["secretName"])
        for src in (vol.get("projected") or {}).get("sources") or []:
            if src.get("configMap"):
                cms.add(src["configMap"]["name"])
            if src.get("secret"):
                secrets.add(src["secret"]["name"])
    cms.discard("")
    secrets.discard("")
    return cms, secrets


_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")


def field_ref_value(pod: Mapping, field_path: str) -> str:
    """The value of a downward API ``fieldRef`` (env var or downwardAPI volume file)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    m = _LABEL_REF.match(field_path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: meta.get("name", ""),
        "metadata.namespace": lambda: meta.get("namespace", ""),
        "metadata.uid": lambda: meta.get("uid", ""),
        "metadata.labels": lambda: format_map_file(meta.get("labels") or {}),
        "metadata.annotations": lambda: format_map_file(meta.get("annotations") or {}),
        "spec.nodeName": lambda: spec.get("nodeName", ""),
        "spec.serviceAccountName": lambda: spec.get("serviceAccountName", "") or "",
        "status.hostIP": lambda: HOST_IP,
        "status.hostIPs": lambda: HOST_IP,
        "status.podIP": lambda: POD_IP,
        "status.podIPs": lambda: POD_IP,
    }
    if field_path not in simple:
        raise EnvError(f"unsupported fieldRef fieldPath {field_path!r}")
    return simple[field_path]()


def format_map_file(values: Mapping[str, str]) -> str:
    """Labels/annotations as kubelet writes them to a downwardAPI file: ``key="value"`` lines, sorted."""
    return "\n".join(f"{k}={_go_quote(str(v))}" for k, v in sorted(values.items()))


def _go_quote(s: str) -> str:
    # Go's %q for the printable ASCII that labels and annotations hold in practice
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def resource_ref_value(pod: Mapping, container_name: str, ref: Mapping,
                       allocatable: Mapping[str, str]) -> str:
    """A ``resourceFieldRef``: a container's request or limit; an unset limit is the node's allocatable."""
    resource = ref.get("resource", "")
    name = ref.get("containerName") or container_name
    containers = list((pod.get("spec") or {}).get("containers") or []) + list(
        (pod.get("spec") or {}).get("initContainers") or [])
    container = next((c for c in containers if c.get("name") == name), None)
    if container is None:
        raise EnvError(f"resourceFieldRef refers to unknown container {name!r}")
    kind, _, res = resource.partition(".")
    if kind not in ("limits", "requests") or res not in ("cpu", "memory", "ephemeral-storage"):
        raise EnvError(f"unsupported resourceFieldRef resource {resource!r}")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(res)
    if value is None:
        value = allocatable.get(res, "0") if kind == "limits" else "0"
    return str(scaled_ceiling(value, ref.get("divisor") or "1"))


# ---------------------------------------------------------------- the environment


def service_env(api_host: str, api_port: int) -> dict[str, str]:
    """The ``kubernetes`` service variables every pod gets, pointing at the real API server."""
    port = str(api_port)
    url = f"tcp://{api_host}:{port}"
    key = f"KUBERNETES_PORT_{port}_TCP"
    return {
        "KUBERNETES_SERVICE_HOST": api_host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": url,
        key: url,
        f"{key}_PROTO": "tcp",
        f"{key}_PORT": port,
        f"{key}_ADDR": api_host,
    }


def _valid_env_name(name: str) -> bool:
    return bool(name) and "=" not in name and "\0" not in name


def container_env(pod: Mapping, container: Mapping, objects: ObjectSnapshot,
                  services: Mapping[str, str] | None = None,
                  allocatable: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Kubernetes-defined environment of one container (service variables included).

    Raises :class:`EnvError` with kubelet's wording when a required reference is missing.
    """
    services = dict(services or {})
    allocatable = allocatable or {}
    ns = (pod.get("metadata") or {}).get("namespace", "")
    env: dict[str, str] = {}

    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        if src.get("configMapRef"):
            ref = src["configMapRef"]
            cm = objects.configmap(ref["name"])
            if cm is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'configmap "{ref["name"]}" not found')
            data = configmap_data(cm)
        elif src.get("secretRef"):
            ref = src["secretRef"]
            sec = objects.secret(ref["name"])
            if sec is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f'secret "{ref["name"]}" not found')
            data = secret_data(sec)
        else:
            continue
        for key in sorted(data):
            if _valid_env_name(prefix + key):
                env[prefix + key] = _as_text(data[key])

    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var or not var["valueFrom"]:
            env[name] = expand(var.get("value") or "", env, services)
            continue
        vf = var["valueFrom"]
        if vf.get("fieldRef"):
            env[name] = field_ref_value(pod, vf["fieldRef"]["fieldPath"])
        elif vf.get("resourceFieldRef"):
            env[name] = resource_ref_value(pod, container["name"], vf["resourceFieldRef"], allocatable)
        elif vf.get("configMapKeyRef") or vf.get("secretKeyRef"):
            value = _key_ref_value(objects, ns, vf)
            if value is not None:
                env[name] = value
        else:
            raise EnvError(f"env var {name!r}: unsupported valueFrom {sorted(vf)}")

    result = dict(services)
    result.update(env)
    return result


def container_argv(container: Mapping, env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded from the container's environment.

    Without an image runtime there is no image ENTRYPOINT/CMD to fall back on: an empty
    ``command`` means ``args`` is the whole command line (an image without ENTRYPOINT).
    """
    command = [expand(a, env) for a in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    return command + args


def process_env(kube_env: Mapping[str, str], inherited: Mapping[str, str],
                pod_name: str) -> dict[str, str]:
    """What the process really gets: the agent's inherited basics, HOSTNAME, then the pod's variables."""
    out = dict(inherited)
    out["HOSTNAME"] = pod_name
    out.update(kube_env)
    return out


def inherited_env(source: Mapping[str, str], names: Iterable[str], extra_path: str | None) -> dict[str, str]:
    """The variables taken from the agent's own environment (the stand-in for an image's ENV).

    ``extra_path`` (the agent's interpreter directory, e.g. the venv's bin) is put in front of
    PATH when missing, so ``supercheck-runner`` resolves even if the agent was started by path.
    """
    out = {n: source[n] for n in names if n in source}
    path = out.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    if extra_path and extra_path not in path.split(":"):
        path = f"{extra_path}:{path}"
    out["PATH"] = path
    return out


def _key_ref_value(objects, ns: str, value_from: dict) -> str | None:
    """The value of a configMapKeyRef or secretKeyRef, None when it is optional and absent;
    errors worded as kubelet words them."""
    if value_from.get("configMapKeyRef"):
        ref, kind = value_from["configMapKeyRef"], "ConfigMap"
        obj = objects.configmap(ref["name"])
        data = configmap_data(obj) if obj is not None else None
    else:
        ref, kind = value_from["secretKeyRef"], "Secret"
        obj = objects.secret(ref["name"])
        data = secret_data(obj) if obj is not None else None
    if data is None:
        if ref.get("optional"):
            return None
        raise EnvError(f'{kind.lower()} "{ref["name"]}" not found')
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise EnvError(f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}")
    return _as_text(data[ref["key"]])
