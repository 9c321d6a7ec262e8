"""Make a vendor payload deviate from its document the way real servers do (for the simulators).

Rules:

1. Pure and deterministic for a given ``random.Random``: :func:`deviate` returns a changed deep
   copy and the JSON path it changed; the input is never modified.
2. Only changes the vendor's document forbids: a documented-required field left out or ``null``
   (names in ``guide.required``), a number sent as a string, a boolean sent as ``"true"``, a
   string where an object was documented, a value outside a documented enumeration (names in
   ``guide.enums``), an unknown field at any depth. Each simulator states its guide's facts in
   a :class:`Guide` of its own (a simulator never imports the product's tables).
3. ``guide.routing`` names the top-level fields that route the payload (event name, key
   fields): they are never changed, so a deviated payload is always routable.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

from streamd.tolerant import json_path

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Guide:
    """What a vendor's document says about its payloads, as far as deviating needs to know."""

    routing: frozenset[str]
    """Top-level fields that route a payload: never changed."""
    required: frozenset[str] = frozenset()
    """Field names the document marks required wherever they appear."""
    enums: frozenset[str] = frozenset()
    """Field names whose values come from a documented list."""


def deviate(obj: dict[str, Any], rng: random.Random, guide: Guide) -> tuple[dict[str, Any], str]:
    """A deep copy of ``obj`` with one deviation at a random path, and that path (``$.a[0].b``)."""
    out = copy.deepcopy(obj)
    candidates = [p for p in _paths(out) if not (len(p) == 1 and p[0] in guide.routing)]
    rng.shuffle(candidates)
    for path in candidates:
        parent, last = _parent(out, path)
        suffix = _change(parent, last, guide, rng)
        if suffix is not None:
            return out, json_path(path + suffix)
    return out, json_path(_unknown_field(out, rng))


def _change(parent: Any, last: str | int, guide: Guide, rng: random.Random) -> Path | None:
    """Apply a deviation that fits the value at ``parent[last]``: the path suffix it changed
    below ``last`` (``()`` for ``last`` itself), or ``None`` when none fits."""
    value = parent[last]
    name = last if isinstance(last, str) else ""
    if name in guide.required and rng.random() < 0.5:
        if rng.random() < 0.5:
            del parent[last]
        else:
            parent[last] = None
        return ()
    if isinstance(value, bool):
        parent[last] = "true" if value else "false"
    elif isinstance(value, int | float):
        parent[last] = str(value)
    elif isinstance(value, dict):
        if rng.random() < 0.5:
            return _unknown_field(value, rng)
        parent[last] = "not-an-object"
    elif isinstance(value, str) and name in guide.enums:
        parent[last] = f"{value}_NEW_IN_A_LATER_RELEASE"
    else:
        return None
    return ()


def _unknown_field(obj: dict[str, Any], rng: random.Random) -> Path:
    name = f"simExtra{rng.randint(100, 999)}"
    obj[name] = {"nested": rng.randint(0, 9)}
    return (name,)


def _paths(obj: Any, prefix: Path = ()) -> list[Path]:
    out: list[Path] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        path = (*prefix, key)
        out.append(path)
        out.extend(_paths(value, path))
    return out


def _parent(obj: Any, path: Path) -> tuple[Any, str | int]:
    for part in path[:-1]:
        obj = obj[part]
    return obj, path[-1]
