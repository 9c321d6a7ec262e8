"""The product's Alvaria tables against the guide as the simulator states it (seed 003): a field
name or row key the product gets wrong fails here, because the simulator never imports them."""

from __future__ import annotations

import ast
import typing
from datetime import datetime
from pathlib import Path

import pytest

import streamd.sim.alvaria as sim
from streamd.sources.alvaria.models import ROW_MODELS
from streamd.sources.alvaria.normalize import CHANNEL_UNITS, TEAM_COUNTERS
from streamd.sources.alvaria.shapes import SHAPES


def documented_type(query: str, name: str) -> str:
    args = typing.get_args(ROW_MODELS[query].model_fields[name].annotation)
    return "int" if int in args else "datetime" if datetime in args else "str"


@pytest.mark.parametrize("query", sim.QUERIES)
def test_row_models_type_every_field_the_guide_documents(query: str) -> None:
    product = {name: documented_type(query, name) for name in ROW_MODELS[query].model_fields}
    assert product == sim.GUIDE_FIELDS[query]


@pytest.mark.parametrize("query", sim.QUERIES)
def test_row_keys_and_scope_fields_are_the_guides(query: str) -> None:
    assert SHAPES[query].key_fields == sim.ROW_KEYS[query]
    assert SHAPES[query].scope_field == sim.SCOPE_FIELDS.get(query)


def test_canonical_metrics_are_fields_the_guide_documents() -> None:
    assert TEAM_COUNTERS == sim.TEAM_COUNT_FIELDS
    assert set(CHANNEL_UNITS) <= set(sim.GUIDE_FIELDS["channelActivity"])
    assert set(sim.TEAM_COUNTERS.values()) <= set(sim.TEAM_COUNT_FIELDS)


def test_the_simulator_imports_nothing_from_the_product() -> None:
    modules = sorted(Path(sim.__file__).parent.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "__main__.py", "world.py", "app.py", "faults.py"}
    for module in modules:
        tree = ast.parse(module.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in imported if m.startswith("streamd.sources")}, module.name
