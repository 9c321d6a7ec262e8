"""Reading the scope listings the guide names but does not document (003 L49, L111, L256)."""

from __future__ import annotations

import orjson
import pytest

from streamd.errors import NormalizationError
from streamd.sim.alvaria import AlvariaWorld
from streamd.sources.alvaria.discovery import read_scope_list


def test_the_guides_contact_list_collection_gives_the_names() -> None:
    body = {"kind": "via#contactLists", "contactLists": [{"name": "ContactList1"}, {"name": "Renewals"}]}
    assert read_scope_list("contact_lists", orjson.dumps(body)) == ["ContactList1", "Renewals"]


def test_the_simulators_listings_give_its_ids() -> None:
    world = AlvariaWorld(agents=2, teams=3, work_types=2)
    teams = orjson.dumps({"kind": "via#teams", "totalItems": 3, "teams": world.teams()})
    assert read_scope_list("teams", teams) == ["team1", "team2", "team3"]
    work_types = orjson.dumps({"workTypes": world.work_types()})
    assert read_scope_list("work_types", work_types) == ["wt1.104", "wt2.104"]


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        (["t1", "t2", "t1"], ["t1", "t2"]),  # a bare array of ids, repeats once
        ({"items": [{"teamId": "t9", "name": "Nine"}, {"id": 17}]}, ["t9", "17"]),
        (
            {"rows": [{"id": ""}, {"name": "no id"}, None, 5.5, {"id": "t3"}]},
            ["t3"],
        ),  # unusable items skipped
        ({"totalItems": 0, "teams": []}, []),
    ],
)
def test_lenient_about_the_undocumented_shape(body: object, ids: list[str]) -> None:
    assert read_scope_list("teams", orjson.dumps(body)) == ids


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>login</html>", "/provisioning/teams: not JSON"),
        (
            b'{"kind": "via#teams", "totalItems": 2}',
            r"no list of teams in the answer \(got an object with \['kind'",
        ),
        (b'"team1"', r"no list of teams in the answer \(got str\)"),
    ],
)
def test_an_answer_without_a_list_is_an_error_naming_what_it_got(body: bytes, message: str) -> None:
    with pytest.raises(NormalizationError, match=message):
        read_scope_list("teams", body)
