"""Property tests: any O2G event of the seed, deviating from the guide, is still published whole."""

from __future__ import annotations

import json
import random
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from streamd.errors import NormalizationError
from streamd.sim.deviate import Guide, deviate
from streamd.sim.o2g import GUIDE as SIM_GUIDE
from streamd.sources.o2g.models import EVENTS
from streamd.sources.o2g.normalize import normalize

FIXTURES = Path(__file__).parents[1] / "fixtures" / "o2g" / "events"
SAMPLES = [json.loads(p.read_text())["event"] for p in sorted(FIXTURES.glob("*.json"))]
ROUTING = SIM_GUIDE.routing | {"user"}


def _required_everywhere(model: type[BaseModel]) -> frozenset[str]:
    """Field names the model tree of one event marks required wherever they appear."""
    seen: dict[str, set[bool]] = {}

    def walk(m: type[BaseModel], visited: set[type[BaseModel]]) -> None:
        if m in visited:
            return
        visited.add(m)
        for name, info in m.model_fields.items():
            seen.setdefault(name, set()).add(info.is_required())
            for arg in (info.annotation, *typing.get_args(info.annotation)):
                for leaf in (arg, *typing.get_args(arg)):
                    if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                        walk(leaf, visited)

    walk(model, set())
    return frozenset(name for name, flags in seen.items() if flags == {True})


def guide(name: str) -> Guide:
    """The guide's facts about one event, read off its model."""
    return Guide(routing=ROUTING, required=_required_everywhere(EVENTS[name].model), enums=SIM_GUIDE.enums)


def _get(obj: Any, path: str) -> Any:
    """The value at a ``$.a[0].b`` path of ``deviate``'s (identifier keys only); KeyError if gone."""
    for part in path[2:].replace("[", ".").replace("]", "").split("."):
        if isinstance(obj, list) and part.isdigit():
            obj = obj[int(part)]
        elif isinstance(obj, dict):
            obj = obj[part]
        else:
            raise KeyError(path)
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=st.sampled_from(SAMPLES), rng=st.randoms(use_true_random=False), rounds=st.integers(1, 3))
def test_a_deviating_seed_event_is_published_with_its_paths(
    sample: dict[str, Any], rng: random.Random, rounds: int
) -> None:
    event, paths = sample, []
    for _ in range(rounds):
        event, path = deviate(event, rng, guide(sample["eventName"]))
        paths.append(path)
    original = normalize("pbx", sample)[0]
    vendor = normalize("pbx", event)[0]  # never a dead letter: the routing fields are intact
    assert (vendor.topic, vendor.type, vendor.key) == (original.topic, original.type, original.key)
    untyped = {
        f"$.{n}"
        for n, info in EVENTS[sample["eventName"]].model.model_fields.items()
        if info.annotation is Any
    }
    paths = [p for p in paths if not any(p == u or p.startswith((u + ".", u + "[")) for u in untyped)]
    if not paths:
        return  # the guide documents no type for what changed (e.g. OnDigitCollected.dataCollected)
    assert vendor.deviations, paths
    for path in paths:  # a later round may have replaced an object holding an earlier path
        assert path in vendor.deviations or any(path.startswith(d) for d in vendor.deviations), (
            path,
            vendor.deviations,
        )
    for path in paths:
        if "simExtra" in path:  # unknown fields are kept as received
            try:
                kept = _get(event, path)
            except KeyError:  # a later round replaced the object holding it
                continue
            assert _get(vendor.data, path) == kept


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["eventName"] for s in SAMPLES])
def test_every_seed_example_conforms(sample: dict[str, Any]) -> None:
    assert normalize("pbx", sample)[0].deviations == ()


@pytest.mark.parametrize("name", sorted(n for n, spec in EVENTS.items() if spec.key.__name__ != "_system"))
def test_an_event_without_its_key_field_is_a_dead_letter(name: str) -> None:
    sample = next(s for s in SAMPLES if s["eventName"] == name)
    keyless = {k: v for k, v in sample.items() if k not in ROUTING - {"eventName"}}
    if EVENTS[name].key.__name__ in ("_user_login", "_rsi"):  # these fall back to a constant key
        assert normalize("pbx", keyless)
        return
    with pytest.raises(NormalizationError) as info:
        normalize("pbx", keyless)
    assert info.value.error_type == "missing_key"
