"""streamd.tolerant's fast check (msgspec) accepts exactly what the strict twin accepts, on JSON."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Annotated, Any

import msgspec
import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamd.sim.deviate import deviate
from streamd.sim.o2g.guide import GUIDE
from streamd.sim.o2g_traffic import O2GTraffic
from streamd.sources.alvaria.models import ROW_READERS
from streamd.sources.o2g.models import EVENTS
from streamd.sources.o2g.models_callcenter import Pilot
from streamd.tolerant import KnownValues, Reader, _strict_schema, fast_type

O2G_READERS = {name: Reader(spec.model) for name, spec in EVENTS.items()}
READERS: dict[str, Reader[Any]] = {
    **O2G_READERS,
    "Pilot": Reader(Pilot),
    **{f"alvaria.{query}": reader for query, reader in ROW_READERS.items()},
}
ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    1,
    -7,
    2**70,
    1.5,
    2.0,
    "",
    "x",
    "LOG_ON",
    [],
    [1],
    ["x"],
    {},
    {"x": 1},
)
"""One of each JSON kind (and the edge cases of strict mode: bool vs int, int vs float, big ints)."""


def twin_accepts(reader: Reader[Any], value: Any) -> bool:
    try:
        reader._strict.validate_python(value)
    except ValidationError:
        return False
    return True


def fast_accepts(reader: Reader[Any], value: Any) -> bool:
    try:
        msgspec.convert(value, reader._fast)
    except msgspec.ValidationError:
        return False
    return True


def sample(node: Any, refs: dict[str, Any], *, full: bool) -> Any:
    """A value the twin schema ``node`` accepts (every optional field too when ``full``)."""
    kind = node["type"]
    if kind == "definitions":
        refs.update({d["ref"]: d for d in node["definitions"]})
        return sample(node["schema"], refs, full=full)
    if kind == "definition-ref":
        return sample(refs[node["schema_ref"]], refs, full=False)
    if kind in ("default", "nullable"):
        return sample(node["schema"], refs, full=full)
    if kind == "model-fields":
        return {
            name: sample(field["schema"], refs, full=False)
            for name, field in node["fields"].items()
            if full or field["schema"]["type"] != "default"
        }
    if kind == "list":
        return [sample(node["items_schema"], refs, full=full)] if "items_schema" in node else [1]
    if kind == "literal":
        return node["expected"][0]
    return {"str": "s", "int": 3, "float": 0.5, "bool": True, "any": {"x": [1]}}[kind]


def paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path inside ``value`` (object keys and list indexes), depth first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*path, i)
            yield from paths(item, (*path, i))


def variants(value: Any) -> Iterator[Any]:
    """``value`` with every path changed to each odd value, removed, or given an unknown sibling."""
    yield value
    for path in paths(value):
        for odd in ODD_VALUES:
            changed = copy.deepcopy(value)
            parent = changed
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = odd
            yield changed
        removed = copy.deepcopy(value)
        parent = removed
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict):
            del parent[path[-1]]
            parent["unknownField"] = 1
        yield removed


@pytest.mark.parametrize("name", sorted(name for name, reader in READERS.items() if reader._fast is not None))
def test_the_fast_check_agrees_with_the_twin_on_every_change_of_a_sample(name: str) -> None:
    reader = READERS[name]
    node = _strict_schema(copy.deepcopy(reader.model.__pydantic_core_schema__))
    seen = 0
    for full in (False, True):
        for value in variants(sample(node, {}, full=full)):
            assert fast_accepts(reader, value) == twin_accepts(reader, value), (name, value)
            seen += 1
    assert seen > 10


def test_every_o2g_event_model_has_a_fast_check() -> None:
    assert [name for name, reader in O2G_READERS.items() if reader._fast is None] == []


def test_the_fast_check_agrees_with_the_twin_on_simulated_and_deviating_o2g_traffic() -> None:
    traffic = O2GTraffic(agents=20, pilots=2, seed=3, full_mix=True)
    rng = random.Random(5)
    events: list[dict[str, Any]] = []
    while len(events) < 3000:
        events.extend(traffic.tick())
    accepted = refused = 0
    for event in events:
        reader = O2G_READERS[event["eventName"]]
        for value in (event, deviate(event, rng, GUIDE)[0]):
            fast = fast_accepts(reader, value)
            assert fast == twin_accepts(reader, value), value
            accepted, refused = accepted + fast, refused + (not fast)
    assert accepted >= 3000  # both outcomes were exercised
    assert refused > 1000


def test_check_gives_the_same_value_and_paths_with_and_without_the_fast_check() -> None:
    traffic = O2GTraffic(agents=5, pilots=1, seed=4, full_mix=True)
    rng = random.Random(6)
    for _ in range(200):
        for event in traffic.tick():
            reader = O2G_READERS[event["eventName"]]
            slow = Reader(reader.model)
            slow._fast = None
            for value in (event, deviate(event, rng, GUIDE)[0]):
                fast_value, fast_paths = reader.check(value)
                slow_value, slow_paths = slow.check(value)
                assert (fast_value, fast_paths) == (slow_value, slow_paths)
                assert (fast_value is value) == (slow_value is value)  # a conforming input is returned as is


class Plain(BaseModel):
    model_config = ConfigDict(extra="allow")

    key: str
    kind: Annotated[str, KnownValues(("A", "B"), "Kind")] | None = None
    tags: list[str] | None = None


class Bounded(BaseModel):
    key: str = Field(min_length=2)


class Aliased(BaseModel):
    key: str = Field(validation_alias="Key")


class Lax(BaseModel):
    model_config = ConfigDict(strict=False)

    when: Any = None
    count: int | str | None = None  # a union: left to the twin


@pytest.mark.parametrize(("model", "fast"), [(Plain, True), (Bounded, False), (Aliased, False), (Lax, False)])
def test_only_plain_json_models_get_a_fast_check(model: type[BaseModel], fast: bool) -> None:
    assert (Reader(model)._fast is not None) is fast


def test_what_is_not_a_plain_schema_gets_no_fast_type() -> None:
    assert fast_type("not a schema") is None
    assert fast_type({"type": "int"}) is None  # lax: the twin's coercion rules are not msgspec's
    assert fast_type({"type": "int", "strict": True, "ge": 0}) is None  # a bound msgspec would not check
    assert fast_type({"type": "definition-ref", "schema_ref": "nowhere"}) is None


def test_known_values_and_unknown_fields_are_refused_by_the_fast_check_too() -> None:
    reader = Reader(Plain)
    assert fast_accepts(reader, {"key": "k", "kind": "A", "tags": ["x"]})
    assert not fast_accepts(reader, {"key": "k", "kind": "C"})
    assert not fast_accepts(reader, {"key": "k", "other": 1})
    assert not fast_accepts(reader, {"key": "k", "tags": [1]})
    assert reader.check({"key": "k", "kind": "C"}) == ({"key": "k", "kind": "C"}, ("$.kind",))
