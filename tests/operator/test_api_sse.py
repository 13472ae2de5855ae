"""The API's live streams over real HTTP (an aiohttp server on a free port), with a fake token reviewer:
401/403/503, the events with ids, resume with Last-Event-ID, heartbeats, the end of a run stream, the cache."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from supercheck.api import ApiServer, make_app
from supercheck.apiauth import Access, Gate, ReviewUnavailable, User, bearer_token, decide
from supercheck.streams import Hub

NS = "team-a"
ALLOWED, TESTRUNS_ONLY, FORBIDDEN = "tok-allowed", "tok-testruns", "tok-forbidden"


class FakeReviewer:
    """Tokens by name; what each user may watch; counts its calls."""

    def __init__(self) -> None:
        self.users = {ALLOWED: User("alice"), TESTRUNS_ONLY: User("tess"), FORBIDDEN: User("mallory")}
        self.authentications = 0
        self.authorisations = 0
        self.down = False

    async def authenticate(self, token: str) -> User | None:
        self.authentications += 1
        await asyncio.sleep(0.01)  # concurrent requests overlap
        if self.down:
            raise ReviewUnavailable("connection refused")
        return self.users.get(token)

    async def allowed(self, user: User, access: Access) -> bool:
        self.authorisations += 1
        assert access.verb == "watch" and access.group == "supercheck.io"
        return user.username == "alice" or (user.username == "tess" and access.resource == "testruns")


def run(body_phase: str | None, attempts: int = 0, name: str = "r1", rv: str = "1") -> dict:
    status = {"phase": body_phase, "attempts": attempts} if body_phase else {}
    return {"metadata": {"name": name, "namespace": NS, "uid": "u-" + name, "resourceVersion": rv},
            "status": status}


class Api:
    def __init__(self, heartbeat: float = 30.0) -> None:
        self.hub = Hub(first_id=1)
        self.reviewer = FakeReviewer()
        self.server = ApiServer(make_app(self.hub, Gate(self.reviewer, 10.0), heartbeat_seconds=heartbeat),
                                0, "127.0.0.1")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


def serve(test, heartbeat: float = 30.0):
    async def main():
        api = Api(heartbeat)
        await api.server.start()
        try:
            async with aiohttp.ClientSession() as session:
                return await asyncio.wait_for(test(api, session), 10)
        finally:
            await api.server.stop()

    return asyncio.run(main())


RUN_PATH = f"/api/v1/namespaces/{NS}/testruns/r1/events"
NS_PATH = f"/api/v1/namespaces/{NS}/events"


def auth(token: str, last_id: int | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if last_id is not None:
        headers["Last-Event-ID"] = str(last_id)
    return headers


async def read_events(resp: aiohttp.ClientResponse, count: int | None = None) -> list[dict]:
    """SSE events (id, event, data parsed, or comment) until ``count`` events or the end of the stream."""
    events: list[dict] = []
    current: dict = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line == "":
            if current:
                events.append(current)
                current = {}
                if count is not None and sum(1 for e in events if "id" in e) >= count:
                    break
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "":
            current["comment"] = value
        elif field == "data":
            current["data"] = json.loads(value)
        else:
            current[field] = value
    if current:
        events.append(current)
    return events


def only_events(events: list[dict]) -> list[dict]:
    return [e for e in events if "id" in e]


def test_no_token_is_401_and_an_unknown_token_too():
    async def test(api, session):
        async with session.get(api.url(RUN_PATH)) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            body = await resp.json()
            assert body["code"] == 401 and body["reason"] == "Unauthorized" and "bearer token" in body["message"]
        async with session.get(api.url(RUN_PATH), headers=auth("who-knows")) as resp:
            assert resp.status == 401
        async with session.get(api.url(RUN_PATH), headers={"Authorization": "Basic YTpi"}) as resp:
            assert resp.status == 401

    serve(test)


def test_a_token_without_watch_is_403_with_a_message():
    async def test(api, session):
        async with session.get(api.url(RUN_PATH), headers=auth(FORBIDDEN)) as resp:
            assert resp.status == 403
            body = await resp.json()
            assert body["message"] == 'mallory may not watch testruns.supercheck.io r1 in namespace "team-a"'
        async with session.get(api.url(f"/api/v1/namespaces/{NS}/jobruns/j/events"), headers=auth(TESTRUNS_ONLY)) \
                as resp:
            assert resp.status == 403

    serve(test)


def test_an_unanswered_review_is_503():
    async def test(api, session):
        api.reviewer.down = True
        async with session.get(api.url(RUN_PATH), headers=auth(ALLOWED)) as resp:
            assert resp.status == 503 and "could not review" in (await resp.json())["message"]

    serve(test)


def test_an_allowed_token_sees_the_run_go_pending_running_passed_and_the_stream_ends():
    async def test(api, session):
        async with session.get(api.url(RUN_PATH), headers=auth(ALLOWED)) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"

            async def story():
                await asyncio.sleep(0.05)  # the stream waits for a run it has not seen
                for i, (phase, attempts) in enumerate([(None, 0), ("Running", 1), ("Running", 1), ("Passed", 1)]):
                    api.hub.observe("testruns", run(phase, attempts, rv=str(i)))
                    await asyncio.sleep(0.01)

            writer = asyncio.create_task(story())
            events = await read_events(resp)  # to the end: the server closes after the final event
            await writer
        got = only_events(events)
        assert [(e["id"], e["event"], e["data"]["phase"]) for e in got] == [
            ("1", "status", "Pending"), ("2", "status", "Running"), ("3", "final", "Passed")]
        assert events[0] == {"retry": "2000"}
        assert got[-1]["data"]["terminal"] is True and got[-1]["data"]["attempts"] == 1
        assert not api.hub.subscribers

    serve(test)


def test_reconnecting_with_last_event_id_loses_no_event_and_repeats_none():
    async def test(api, session):
        api.hub.observe("testruns", run(None))
        async with session.get(api.url(RUN_PATH), headers=auth(ALLOWED)) as resp:
            first = only_events(await read_events(resp, 1))
        assert [e["id"] for e in first] == ["1"]
        # Disconnected: the run moves on meanwhile
        api.hub.observe("testruns", run("Running", 1))
        api.hub.observe("testruns", run("Passed", 1))
        async with session.get(api.url(RUN_PATH), headers=auth(ALLOWED, 1)) as resp:
            rest = only_events(await read_events(resp))
        assert [(e["id"], e["data"]["phase"]) for e in rest] == [("2", "Running"), ("3", "Passed")]
        assert not any(e["data"].get("resync") for e in rest)
        # The query parameter works as the header does
        async with session.get(api.url(RUN_PATH + "?lastEventId=2"), headers=auth(ALLOWED)) as resp:
            assert [e["id"] for e in only_events(await read_events(resp))] == ["3"]
        # After the final event there is nothing more: 204 stops an EventSource from reconnecting
        async with session.get(api.url(RUN_PATH), headers=auth(ALLOWED, 3)) as resp:
            assert resp.status == 204

    serve(test)


def test_a_quiet_stream_gets_heartbeats():
    async def test(api, session):
        api.hub.observe("testruns", run("Running", 1))
        async with session.get(api.url(RUN_PATH), headers=auth(ALLOWED)) as resp:
            events = await read_events_until(resp, lambda evs: sum("comment" in e for e in evs) >= 2)
        assert [e["id"] for e in only_events(events)] == ["1"]
        assert [e["comment"] for e in events if "comment" in e][:2] == ["heartbeat", "heartbeat"]

    serve(test, heartbeat=0.05)


async def read_events_until(resp, done) -> list[dict]:
    events: list[dict] = []
    while not done(events):
        events += await _one(resp)
    return events


async def _one(resp) -> list[dict]:
    current: dict = {}
    while True:
        line = (await resp.content.readline()).decode().rstrip("\n")
        if line == "":
            return [current] if current else []
        field, _, value = line.partition(":")
        current["comment" if field == "" else field] = value.removeprefix(" ")


def test_the_namespace_stream_shows_what_the_token_may_watch_and_goes_on():
    async def test(api, session):
        api.hub.observe("testruns", run("Running", 1, name="a"))
        api.hub.observe("jobruns", run("Running", 0, name="j"))
        async with session.get(api.url(NS_PATH), headers=auth(TESTRUNS_ONLY)) as resp:
            assert resp.status == 200
            api.hub.observe("jobruns", run("Passed", 0, name="j"))
            api.hub.observe("testruns", run("Passed", 1, name="a"))
            api.hub.observe("testruns", run("Running", 1, name="b"))
            events = only_events(await read_events(resp, 3))
            assert [(e["data"]["name"], e["data"]["phase"]) for e in events] == [
                ("a", "Running"), ("a", "Passed"), ("b", "Running")]
            assert not resp.content.at_eof()  # a final event does not end a namespace stream
        async with session.get(api.url(NS_PATH), headers=auth(ALLOWED, 4)) as resp:
            events = only_events(await read_events(resp, 1))
            assert [(e["id"], e["data"]["kind"], e["data"]["name"]) for e in events] == [("5", "TestRun", "b")]

    serve(test)


def test_one_token_opening_many_streams_costs_one_review_each():
    async def test(api, session):
        api.hub.observe("testruns", run("Running", 1))

        async def open_one():
            async with session.get(api.url(RUN_PATH), headers=auth(ALLOWED)) as resp:
                return len(only_events(await read_events(resp, 1)))

        assert await asyncio.gather(*(open_one() for _ in range(20))) == [1] * 20
        assert (api.reviewer.authentications, api.reviewer.authorisations) == (1, 1)

    serve(test)


def test_a_client_that_leaves_is_unsubscribed():
    async def test(api, session):
        api.hub.observe("testruns", run("Running", 1))
        async with session.get(api.url(RUN_PATH), headers=auth(ALLOWED)) as resp:
            await read_events(resp, 1)
            assert len(api.hub.subscribers) == 1
        for _ in range(100):  # the next heartbeat write finds the closed connection
            if not api.hub.subscribers:
                break
            await asyncio.sleep(0.02)
        assert not api.hub.subscribers

    serve(test, heartbeat=0.05)


@pytest.mark.parametrize(("header", "token"), [
    (None, None), ("", None), ("Bearer", None), ("Bearer  abc ", "abc"), ("bearer abc", "abc"), ("Token abc", None)])
def test_bearer_token(header, token):
    assert bearer_token(header) == token


def test_decide():
    wanted = [Access(NS, "testruns"), Access(NS, "jobruns")]
    assert decide(None, wanted, []).status == 401
    assert decide(User("u"), wanted, [False, False]).status == 403
    ok = decide(User("u"), wanted, [True, False])
    assert ok.status == 200 and ok.allowed == frozenset({"testruns"})


def test_decisions_expire_after_the_ttl():
    now = [0.0]
    reviewer = FakeReviewer()
    gate = Gate(reviewer, 10.0, clock=lambda: now[0])

    async def main():
        wanted = [Access(NS, "testruns", "r1")]
        assert (await gate.check(f"Bearer {ALLOWED}", wanted)).status == 200
        assert (await gate.check(f"Bearer {ALLOWED}", wanted)).status == 200
        assert reviewer.authentications == 1
        now[0] = 11.0
        assert (await gate.check(f"Bearer {ALLOWED}", wanted)).status == 200
        assert reviewer.authentications == 2
        reviewer.down = True
        now[0] = 22.0
        assert (await gate.check(f"Bearer {ALLOWED}", wanted)).status == 503
        reviewer.down = False
        assert (await gate.check(f"Bearer {ALLOWED}", wanted)).status == 200  # an error is not cached

    asyncio.run(main())


def test_the_operator_start_up_serves_the_api_and_kopf_events_feed_it():
    """The Kopf wiring (supercheck.stream_handlers): start-up makes the hub and the server on
    SUPERCHECK_API_PORT; each TestRun/JobRun event goes to the hub; clean-up stops the server."""
    import socket

    import kopf

    from supercheck import stream_handlers
    from supercheck.config import Settings

    with socket.socket() as s:  # a free port, for the setting (0 means no API)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        memo = kopf.Memo(settings=Settings(SUPERCHECK_API_PORT=str(port)))
        await stream_handlers.api_startup(memo=memo)
        try:
            stream_handlers.testrun_streamed(type=None, body=run("Running", 1), memo=memo)
            stream_handlers.jobrun_streamed(type="DELETED", body=run("Running", 0, name="j"), memo=memo)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 200
                async with session.get(f"http://127.0.0.1:{port}{RUN_PATH}") as resp:
                    assert resp.status == 401  # the real reviewer is never asked without a token
        finally:
            await stream_handlers.api_cleanup(memo=memo)
        assert [e.state.phase for e in memo.hub.ring] == ["Running"]  # a run never seen is not "deleted"
        memo_off = kopf.Memo(settings=Settings(SUPERCHECK_API_PORT="0"))
        await stream_handlers.api_startup(memo=memo_off)
        assert isinstance(memo_off.hub, Hub) and "api_server" not in memo_off

    asyncio.run(main())


def test_the_kube_reviewer_asks_the_api_server_what_kubectl_would(monkeypatch):
    """KubeReviewer's TokenReview and SubjectAccessReview bodies and answers, on an HTTP server standing in
    for the API server (the real one: tests/operator/test_cluster_sse.py)."""
    import kubernetes
    from aiohttp import web

    from supercheck.apiauth import KubeReviewer

    seen: list[tuple[str, dict]] = []

    async def token_review(request):
        body = await request.json()
        seen.append(("tokenreview", body))
        if body["spec"]["token"] == "broken":
            return web.Response(status=500, text="etcd away")
        ok = body["spec"]["token"] == "good"
        user = {"username": "system:serviceaccount:team-a:ci", "uid": "u1",
                "groups": ["system:serviceaccounts", "system:authenticated"], "extra": {"k": ["v"]}}
        return web.json_response({**body, "status": {"authenticated": ok, **({"user": user} if ok else {})}})

    async def access_review(request):
        body = await request.json()
        seen.append(("sar", body))
        allowed = body["spec"]["resourceAttributes"].get("name") == "r1"
        return web.json_response({**body, "status": {"allowed": allowed}})

    async def main():
        app = web.Application()
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", token_review)
        app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", access_review)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        cfg = kubernetes.client.Configuration()
        cfg.host = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        for name in ("AuthenticationV1Api", "AuthorizationV1Api"):
            real = getattr(kubernetes.client, name)
            monkeypatch.setattr(kubernetes.client, name, lambda real=real: real(kubernetes.client.ApiClient(cfg)))
        try:
            reviewer = KubeReviewer()
            assert await reviewer.authenticate("nope") is None
            user = await reviewer.authenticate("good")
            assert user == User("system:serviceaccount:team-a:ci", "u1",
                                ("system:serviceaccounts", "system:authenticated"), {"k": ("v",)})
            assert await reviewer.allowed(user, Access(NS, "testruns", "r1"))
            assert not await reviewer.allowed(user, Access(NS, "jobruns"))
            with pytest.raises(ReviewUnavailable):
                await reviewer.authenticate("broken")
        finally:
            await runner.cleanup()

    asyncio.run(main())
    sar = [body for kind, body in seen if kind == "sar"]
    assert sar[0]["spec"] == {"user": "system:serviceaccount:team-a:ci", "uid": "u1",
                              "groups": ["system:serviceaccounts", "system:authenticated"], "extra": {"k": ["v"]},
                              "resourceAttributes": {"namespace": NS, "verb": "watch", "group": "supercheck.io",
                                                     "resource": "testruns", "name": "r1"}}
    assert "name" not in sar[1]["spec"]["resourceAttributes"]
    assert seen[0][1] == {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "nope"}}
