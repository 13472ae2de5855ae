"""Who may read a run's live stream: the bearer token reviewed by the API server, as ``kubectl`` would be.

Authentication is a TokenReview (authentication.k8s.io/v1) of the bearer token; authorisation a
SubjectAccessReview (authorization.k8s.io/v1) of the user it names for verb ``watch`` on the run's
resource (testruns or jobruns of supercheck.io) in its namespace, of that name for a run stream. So the
operator grants nothing of its own: whoever may ``kubectl get --watch`` a run may stream it.

Decisions are cached for a few seconds, keyed by a hash of the token (never the token itself), and one
review is in flight per key at a time: 500 streams opened at once with one token cost one TokenReview and
one SubjectAccessReview, not 500 of each.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import kubernetes

from supercheck.vocabulary import GROUP

log = logging.getLogger(__name__)

WATCH = "watch"


class ReviewUnavailable(Exception):
    """The API server did not answer a review (the stream is refused with 503, not 401 or 403)."""


@dataclass(frozen=True)
class User:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Access:
    """What a stream reads: ``watch`` on a run resource in a namespace (of one name, for a run stream)."""

    namespace: str
    resource: str  # testruns | jobruns
    name: str | None = None
    verb: str = WATCH
    group: str = GROUP


class Reviewer(Protocol):
    async def authenticate(self, token: str) -> User | None:
        """The token's user; None when the API server does not know the token. Raises ReviewUnavailable."""

    async def allowed(self, user: User, access: Access) -> bool:
        """Whether the user may do it. Raises ReviewUnavailable."""


@dataclass(frozen=True)
class Decision:
    status: int  # 200, 401, 403 or 503
    message: str
    allowed: frozenset[str] = frozenset()  # the resources of the request the user may watch
    user: str = ""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for none or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def decide(user: User | None, wanted: Sequence[Access], allowed: Sequence[bool]) -> Decision:
    """The answer to a stream request from its reviews: 401 without a known user, 403 when none of
    the wanted resources may be watched, else 200 with those that may."""
    if user is None:
        return Decision(401, "a valid bearer token is required (Authorization: Bearer <token>)")
    ok = frozenset(a.resource for a, yes in zip(wanted, allowed, strict=True) if yes)
    if not ok:
        what = " or ".join(sorted({a.resource for a in wanted}))
        where = wanted[0].namespace if wanted else ""
        name = f" {wanted[0].name}" if wanted and wanted[0].name else ""
        return Decision(403, f'{user.username} may not watch {what}.{GROUP}{name} in namespace "{where}"',
                        user=user.username)
    return Decision(200, "", ok, user.username)


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class _TtlCache:
    """Results by key for ``ttl`` seconds; one computation in flight per key (the others await it)."""

    def __init__(self, ttl: float, clock: Callable[[], float], max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self.entries: dict[Any, tuple[float, asyncio.Future[Any]]] = {}

    async def get(self, key: Any, compute: Callable[[], Awaitable[Any]]) -> Any:
        now = self.clock()
        hit = self.entries.get(key)
        if hit is not None and (hit[0] > now or not hit[1].done()):
            return await asyncio.shield(hit[1])
        if len(self.entries) >= self.max_entries:
            self.entries = {k: v for k, v in self.entries.items() if v[0] > now or not v[1].done()}
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.entries[key] = (now + self.ttl, future)
        try:
            result = await compute()
        except BaseException as exc:
            self.entries.pop(key, None)  # an error is not remembered: the next request asks again
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        self.entries[key] = (self.clock() + self.ttl, future)
        future.set_result(result)
        return result


class Gate:
    """Reviews a stream request's token and access, with a short cache."""

    def __init__(self, reviewer: Reviewer, ttl_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reviewer = reviewer
        self.users = _TtlCache(ttl_seconds, clock)
        self.accesses = _TtlCache(ttl_seconds, clock)

    async def check(self, authorization: str | None, wanted: Sequence[Access]) -> Decision:
        token = bearer_token(authorization)
        if token is None:
            return decide(None, wanted, [])
        key = token_key(token)
        try:
            user = await self.users.get(key, lambda: self.reviewer.authenticate(token))
            if user is None:
                return decide(None, wanted, [])
            allowed = [await self._allowed(key, user, a) for a in wanted]
        except ReviewUnavailable as exc:
            return Decision(503, f"the API server could not review the token: {exc}")
        return decide(user, wanted, allowed)

    async def _allowed(self, key: str, user: User, access: Access) -> bool:
        return bool(await self.accesses.get((key, access), lambda: self.reviewer.allowed(user, access)))


# ---------------------------------------------------------------- the reviews on the API server


class KubeReviewer:
    """TokenReview and SubjectAccessReview on the API server, off the event loop (the client blocks).
    One client each, made at the first review (after the operator loaded its configuration), so the
    reviews reuse their connections."""

    def __init__(self) -> None:
        self._authentication: Any = None
        self._authorization: Any = None

    async def authenticate(self, token: str) -> User | None:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        status = (await asyncio.to_thread(self._create_token_review, body)).get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        return User(username=str(user.get("username") or ""), uid=str(user.get("uid") or ""),
                    groups=tuple(user.get("groups") or ()),
                    extra={k: tuple(v or ()) for k, v in (user.get("extra") or {}).items()})

    async def allowed(self, user: User, access: Access) -> bool:
        attributes: dict[str, Any] = {"namespace": access.namespace, "verb": access.verb, "group": access.group,
                                      "resource": access.resource}
        if access.name:
            attributes["name"] = access.name
        spec: dict[str, Any] = {"user": user.username, "groups": list(user.groups),
                                "extra": {k: list(v) for k, v in user.extra.items()},
                                "resourceAttributes": attributes}
        if user.uid:
            spec["uid"] = user.uid
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        status = (await asyncio.to_thread(self._create_subject_access_review, body)).get("status") or {}
        return bool(status.get("allowed")) and not status.get("denied")

    def _create_token_review(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._authentication is None:
            self._authentication = kubernetes.client.AuthenticationV1Api()
        api = self._authentication
        return _review(api.create_token_review, body)

    def _create_subject_access_review(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._authorization is None:
            self._authorization = kubernetes.client.AuthorizationV1Api()
        api = self._authorization
        return _review(api.create_subject_access_review, body)


def _review(call: Callable[..., Any], body: dict[str, Any]) -> dict[str, Any]:
    try:
        resp = call(body, _preload_content=False, _request_timeout=10)
        data = json.loads(resp.data or b"{}")
    except kubernetes.client.ApiException as exc:
        raise ReviewUnavailable(f"{exc.status} {exc.reason}") from exc
    except (OSError, ValueError, kubernetes.client.exceptions.OpenApiException) as exc:
        raise ReviewUnavailable(str(exc)) from exc
    return data if isinstance(data, dict) else {}
