"""streamd.tolerant: strict twin, deviation paths, coercions, the typed view of what could be typed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict

from streamd.tolerant import MAX_PATHS, KnownValues, Reader, coerce, json_path


class Inner(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    count: int | None = None


class Outer(BaseModel):
    model_config = ConfigDict(extra="allow")

    key: str
    flag: bool | None = None
    ratio: float | None = None
    when: datetime | None = None
    kind: Annotated[str, KnownValues(("A", "B"), "Kind")] | None = None
    inner: Inner | None = None
    items: list[Inner] | None = None


READER = Reader(Outer)


def test_a_conforming_input_is_returned_as_is_with_its_model() -> None:
    obj = {"key": "k", "flag": True, "ratio": 1, "when": "2026-01-01T00:00:00Z", "kind": "A", "items": []}
    reading = READER.read(obj)
    assert reading.value is obj
    assert reading.deviations == ()
    assert reading.model is not None
    assert reading.model.when == datetime.fromisoformat("2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("obj", "paths", "value"),
    [
        ({"key": "k", "flag": "true"}, ["$.flag"], {"key": "k", "flag": True}),
        (
            {"key": "k", "inner": {"id": "1", "count": "42"}},
            ["$.inner.count"],
            {"key": "k", "inner": {"id": "1", "count": 42}},
        ),
        ({"key": 7}, ["$.key"], {"key": "7"}),
        ({"key": "k", "ratio": "0.5"}, ["$.ratio"], {"key": "k", "ratio": 0.5}),
        ({"key": "k", "kind": "C"}, ["$.kind"], {"key": "k", "kind": "C"}),
        ({"key": "k", "inner": "text"}, ["$.inner"], {"key": "k", "inner": "text"}),
        (
            {"key": "k", "items": [{"count": 1}, 5]},
            ["$.items[0].id", "$.items[1]"],
            {"key": "k", "items": [{"count": 1}, 5]},
        ),
        ({"key": "k", "x": {"y": 1}, "inner": {"id": "1", "z": None}}, ["$.inner.z", "$.x"], None),
        ({"key": "k", "a b": 1}, ['$["a b"]'], None),
    ],
)
def test_deviations_are_listed_coerced_where_unambiguous_kept_otherwise(
    obj: dict[str, Any], paths: list[str], value: dict[str, Any] | None
) -> None:
    reading = READER.read(obj)
    assert sorted(reading.deviations) == sorted(paths)
    assert reading.value == (obj if value is None else value)
    assert reading.model is not None
    assert reading.model.key == str(reading.value["key"])


def test_the_model_keeps_what_could_be_typed() -> None:
    reading = READER.read(
        {"key": "k", "flag": "maybe", "inner": {"count": 3}, "items": [{"id": "1"}, {"count": 2}]}
    )
    assert reading.model is not None
    assert reading.model.flag is None
    assert reading.model.inner is None
    assert [i.id for i in reading.model.items or []] == ["1"]
    assert reading.value["flag"] == "maybe"
    assert reading.value["inner"] == {"count": 3}


def test_a_required_top_level_field_that_cannot_be_typed_leaves_no_model() -> None:
    reading = READER.read({"flag": True})
    assert reading.deviations == ("$.key",)
    assert reading.model is None


def test_the_input_is_never_modified() -> None:
    obj = {"key": "k", "inner": {"id": "1", "count": "42"}}
    READER.read(obj)
    assert obj == {"key": "k", "inner": {"id": "1", "count": "42"}}


def test_the_paths_are_bounded() -> None:
    reading = READER.read({"key": "k", **{f"x{i}": i for i in range(MAX_PATHS + 5)}})
    assert len(reading.deviations) == MAX_PATHS + 1
    assert reading.deviations[-1] == "..."


@pytest.mark.parametrize(
    ("error_type", "raw", "expected"),
    [
        ("int_type", "42", (True, 42)),
        ("int_type", " -3 ", (True, -3)),
        ("int_type", 4.0, (True, 4)),
        ("int_type", 4.5, (False, 4.5)),
        ("int_type", "4x", (False, "4x")),
        ("float_type", "nan", (False, "nan")),
        ("bool_type", "TRUE", (True, True)),
        ("bool_type", 0, (True, False)),
        ("bool_type", "yes", (False, "yes")),
        ("string_type", 12, (True, "12")),
        ("string_type", True, (False, True)),
        ("model_type", "x", (False, "x")),
    ],
)
def test_coerce(error_type: str, raw: Any, expected: tuple[bool, Any]) -> None:
    assert coerce(error_type, raw) == expected


def test_json_path() -> None:
    assert json_path(("a", 0, "b")) == "$.a[0].b"
    assert json_path(()) == "$"
    assert json_path(("a-b",)) == '$["a-b"]'


def test_known_values_describe_the_schema() -> None:
    schema = Outer.model_json_schema()["properties"]["kind"]["anyOf"][0]
    assert schema["examples"] == ["A", "B"]
    assert "other values are kept" in schema["description"]
