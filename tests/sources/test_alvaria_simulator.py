"""The Alvaria simulator itself: it enforces what seed 003 requires, and its world moves."""

from __future__ import annotations

from functools import partial

import httpx
import pytest

from streamd.sim.alvaria import AlvariaSimulator, AlvariaWorld, error, query_of

pytestmark = pytest.mark.anyio


async def token(client: httpx.AsyncClient, sim: AlvariaSimulator, **form: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "scope": "reportingapi"} | form
    return await client.post(sim.token_url, data=data, auth=(sim.client_id, sim.client_secret))


async def test_token_then_queries_with_bearer_and_api_key() -> None:
    async with AlvariaSimulator(agents=4) as sim, httpx.AsyncClient() as client:
        answer = (await token(client, sim)).json()
        assert answer["token_type"] == "Bearer"
        assert answer["expires_in"] == sim.token_ttl
        headers = {"Authorization": f"Bearer {answer['access_token']}", "x-api-key": sim.api_key}
        users = await client.get(
            f"{sim.base_url}/reporting/queries/userActivity/data?teamId=team1", headers=headers
        )
        assert users.status_code == 200
        assert users.json()["kind"] == "via#queryDataList"
        assert {r["teamId"] for r in users.json()["rows"]} == {"team1"}
        presence = await client.get(
            f"{sim.base_url}/reporting/presence/users/data?state=LoggedOn", headers=headers
        )
        assert len(presence.json()["users"]) == 4
        lists = await client.get(
            f"{sim.base_url}/reporting/queries/listActivity/data?contactList=Leads", headers=headers
        )
        assert lists.json()["kind"] == "via#listActivity"


async def test_what_the_api_rejects() -> None:
    async with AlvariaSimulator(agents=2) as sim, httpx.AsyncClient() as client:
        assert (await token(client, sim, scope="other")).status_code == 400
        bad = await client.post(sim.token_url, data={"grant_type": "client_credentials"}, auth=("x", "y"))
        assert bad.status_code == 401
        good = {"Authorization": f"Bearer {(await token(client, sim)).json()['access_token']}"}
        url = f"{sim.base_url}/reporting/queries/teamActivity/data"
        assert (
            await client.get(url, params={"teamId": "team1"}, headers=good)
        ).status_code == 403  # no x-api-key
        good["x-api-key"] = sim.api_key
        assert (await client.get(url, headers=good)).status_code == 400  # teamId is required
        assert (await client.get(url, params={"teamId": "ghost"}, headers=good)).status_code == 404
        presence = f"{sim.base_url}/reporting/presence/users/data"
        assert (await client.get(presence, headers=good)).status_code == 400  # state=LoggedOn is required
        sim.expire_tokens()
        expired = await client.get(presence, params={"state": "LoggedOn"}, headers=good)
        assert (expired.status_code, expired.content) == (401, b"")  # presence's 401 has no body (003 L363)


async def test_scripted_faults_and_the_request_log() -> None:
    now = [100.0]
    async with AlvariaSimulator(agents=2, clock=lambda: now[0]) as sim, httpx.AsyncClient() as client:
        sim.faults.add("*", error(429, retry_after="3"))
        sim.faults.add("token", error(503))
        assert (await token(client, sim)).status_code == 503
        now[0] = 105.0
        throttled = await client.get(f"{sim.base_url}/reporting/presence/users/data")
        assert (throttled.status_code, throttled.headers["retry-after"]) == (429, "3")
        assert [(query_of(r), r.status, r.at) for r in sim.log.entries] == [
            ("token", 503, 100.0),
            ("presence", 429, 105.0),
        ]


def test_world_moves_with_time_and_keeps_team_counts_consistent() -> None:
    world = AlvariaWorld(agents=40, teams=2, seed=7, now=0.0)
    before = [r["stateId"] for r in world.user_rows("team1", 0.0)]
    world.step(120.0)
    after = [r["stateId"] for r in world.user_rows("team1", 120.0)]
    assert before != after
    counts = world.team_rows("team1")[0]
    idle = sum(1 for s in after if s == "idle")
    assert counts["idleCount"] == idle
    world.set_state("agent00001", "loggedoff", now=130.0)
    assert "agent00001" not in {u["userId"] for u in world.presence_users()}


async def test_serve_forever_hands_back_the_running_simulator() -> None:
    import anyio

    from streamd.sim.alvaria import serve_forever

    async with anyio.create_task_group() as tg:
        sim: AlvariaSimulator = await tg.start(partial(serve_forever, agents=3))
        async with httpx.AsyncClient() as client:
            assert (await token(client, sim)).status_code == 200
        tg.cancel_scope.cancel()


async def test_scope_listings_follow_teams_and_worktypes_added_and_removed() -> None:
    async with AlvariaSimulator(agents=4) as sim, httpx.AsyncClient() as client:
        assert (await client.get(f"{sim.base_url}/provisioning/teams")).status_code == 401  # a token first
        headers = {
            "Authorization": f"Bearer {(await token(client, sim)).json()['access_token']}",
            "x-api-key": sim.api_key,
        }
        get = partial(client.get, headers=headers)
        teams = (await get(f"{sim.base_url}/provisioning/teams")).json()
        assert teams == {
            "kind": "via#teams",
            "totalItems": 2,
            "teams": [{"id": "team1", "name": "Team 1"}, {"id": "team2", "name": "Team 2"}],
        }
        sim.world.add_team("team3", "Night shift")
        sim.world.remove_team("team1")
        sim.world.add_work_type("wt9.104")
        assert [t["id"] for t in (await get(f"{sim.base_url}/provisioning/teams")).json()["teams"]] == [
            "team2",
            "team3",
        ]
        work_types = (await get(f"{sim.base_url}/provisioning/workTypes")).json()["workTypes"]
        assert [w["id"] for w in work_types] == ["wt1.104", "wt2.104", "wt9.104"]
        lists = (await get(f"{sim.base_url}/campaign/lists")).json()
        assert [item["name"] for item in lists["contactLists"]] == ["Leads", "Renewals"]  # 003 L49
        users = f"{sim.base_url}/reporting/queries/userActivity/data"
        assert (await get(users, params={"teamId": "team1"})).status_code == 404  # the team is gone
        assert (await get(users, params={"teamId": "team3"})).json()["rows"] == []
        assert all(a.team_id != "team1" for a in sim.world.agents.values())  # its agents left with it
        assert [query_of(r) for r in sim.log.entries].count("teams") == 3
