"""Tolerant reading: a vendor payload that deviates from its document is still published.

One rule for every vendor (README "The Kafka contract", docs/architecture.md "Tolerant reading"):

1. An input is published on its vendor topic whenever it can be *routed*: the fields its topic,
   key and event type need are present and usable. Which fields those are is the vendor's
   business (its normalize module); this module only reads.
2. Everything else is kept as received. :meth:`Reader.read` validates against a *strict*
   variant of the vendor model (no coercion, unknown fields refused), which costs nothing more
   than today's validation when the input conforms. When it does not:

   - every deviating JSON path is listed (``$.participants[0].identity.id``): a missing
     required field, a value of the wrong type, ``null`` for an object, an unknown field;
   - values whose meaning is unambiguous are coerced in the published value (``"42"`` for an
     integer, ``"true"`` for a boolean, ``1.0`` for an integer, a number for a string), the
     path is still listed;
   - every other value stays exactly as received;
   - the typed model is rebuilt from what could be typed: deviating optional parts are left
     out of it (never out of the published value); when a required top-level field is
     unusable the model is ``None`` and the vendor reads the raw value.

3. The deviations ride on the record as the ``streamd_deviations`` header (a JSON array of
   paths, at most :data:`MAX_PATHS`) and count in ``streamd_deviations_total{source,type}``.

Pure: no I/O, no logging, no clock.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, cast

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, SchemaValidator

__all__ = ["MAX_PATHS", "KnownValues", "Reader", "Reading", "coerce", "json_path", "resolve"]

M = TypeVar("M", bound=BaseModel)

MAX_PATHS: Final = 32
"""At most this many deviation paths are listed per record (then ``"..."``)."""

_PRUNE_ROUNDS: Final = 8
_INT = re.compile(r"[+-]?\d{1,18}")
_LAX_TYPES: Final = frozenset({"datetime", "date", "time", "timedelta", "uuid", "decimal", "enum"})
"""Schema types whose JSON form is a string: strict mode would refuse every one of them."""


_KNOWN: Final = "streamd_known_values"


@dataclass(frozen=True, slots=True)
class KnownValues:
    """Annotation of an *open* enumeration: ``Annotated[str, KnownValues(("A", "B"), "Kind")]``.

    Any string validates (a vendor's next release adds values); a :class:`Reader` lists a value
    outside ``values`` as a deviation, and the JSON schema names the known values.
    """

    values: tuple[str, ...]
    name: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        schema: dict[str, Any] = dict(handler(source))
        schema["metadata"] = {**schema.get("metadata", {}), _KNOWN: list(self.values)}
        return cast(CoreSchema, schema)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "description": f"{self.name}: known values {', '.join(self.values)} (other values are kept)",
            "examples": list(self.values),
        }


@dataclass(frozen=True, slots=True)
class Reading(Generic[M]):
    """What :meth:`Reader.read` made of one input."""

    value: dict[str, Any]
    """The input as received, with unambiguous coercions applied: publish this."""
    model: M | None
    """The typed view of what could be typed; ``None`` when a required top-level field is unusable."""
    deviations: tuple[str, ...] = ()
    """JSON paths that deviated from the document, in input order (empty when it conformed)."""


class Reader(Generic[M]):
    """Reads payloads of one vendor model tolerantly (module docstring)."""

    __slots__ = ("_lax", "_strict", "model")

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._lax = model.__pydantic_validator__
        schema = _strict_schema(copy.deepcopy(model.__pydantic_core_schema__))
        self._strict = SchemaValidator(schema)

    def check(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The value to publish and its deviations, without building the typed model (hot path)."""
        value = obj if isinstance(obj, dict) else dict(obj)
        try:
            self._strict.validate_python(value)
        except ValidationError as exc:
            return self._tolerate(value, exc)
        return value, ()

    def read(self, obj: Mapping[str, Any]) -> Reading[M]:
        """Validate ``obj``; never raises for a mapping (see the module docstring)."""
        value, deviations = self.check(obj)
        return Reading(value, self._typed(value), deviations)

    def _tolerate(self, obj: dict[str, Any], exc: ValidationError) -> tuple[dict[str, Any], tuple[str, ...]]:
        value = obj
        paths: dict[str, None] = {}
        for err in exc.errors(include_url=False, include_context=False):
            where, found = resolve(obj, err["loc"], missing=err["type"] == "missing")
            paths.setdefault(json_path(where))
            if not found:
                continue
            ok, coerced = coerce(err["type"], _get(obj, where))
            if ok:
                value = _replace(value, where, coerced)
        return value, _bounded(tuple(paths))

    def _typed(self, value: dict[str, Any]) -> M | None:
        work: Any = value
        for _ in range(_PRUNE_ROUNDS):
            try:
                model: M = self._lax.validate_python(work)
                return model
            except ValidationError as exc:
                errors = exc.errors(include_url=False, include_context=False)
            for err in reversed(errors):  # input order reversed: a list keeps its earlier indices
                where, found = resolve(work, err["loc"], missing=err["type"] == "missing")
                target = where if found and err["type"] != "missing" else where[:-1]
                if not target:
                    return None  # a required top-level field: nothing sensible to type
                work = _delete(work, target)
        return None


def json_path(parts: tuple[str | int, ...]) -> str:
    """``("a", 0, "b")`` -> ``"$.a[0].b"`` (keys that are not identifiers are quoted)."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append("[" + repr(part).replace("'", '"') + "]")
    return "".join(out)


def resolve(
    obj: Any, loc: tuple[str | int, ...], *, missing: bool = False
) -> tuple[tuple[str | int, ...], bool]:
    """The real data path of a pydantic error location, and whether a value exists there.

    Pydantic adds union member tags (``"int"``, ``"function-after[...]"``) to locations; they
    are skipped by walking ``loc`` along the data. A ``missing`` error's last part is kept.
    """
    path: list[str | int] = []
    node = obj
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
            path.append(part)
        elif missing and i == len(loc) - 1 and isinstance(node, dict):
            path.append(part)
            return tuple(path), False
    return tuple(path), not missing


def coerce(error_type: str, value: Any) -> tuple[bool, Any]:
    """``(True, typed)`` when ``value``'s meaning for the failed type is unambiguous."""
    if error_type in ("int_type", "int_parsing", "int_from_float"):
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            return True, int(value)
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
    elif error_type in ("float_type", "float_parsing"):
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return False, value
            if math.isfinite(number):
                return True, number
    elif error_type in ("bool_type", "bool_parsing"):
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return True, value.strip().lower() == "true"
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return True, bool(value)
    elif error_type == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return True, str(value)
    return False, value


def _bounded(paths: tuple[str, ...]) -> tuple[str, ...]:
    return paths if len(paths) <= MAX_PATHS else (*paths[:MAX_PATHS], "...")


def _get(obj: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        obj = obj[part]
    return obj


def _replace(obj: Any, path: tuple[str | int, ...], new: Any) -> Any:
    """A copy of ``obj`` with ``new`` at ``path``; only the containers on the path are copied."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    clone = list(obj) if isinstance(obj, list) else dict(obj)
    clone[head] = _replace(obj[head], rest, new)  # type: ignore[index]
    return clone


def _delete(obj: Any, path: tuple[str | int, ...]) -> Any:
    """A copy of ``obj`` without what is at ``path`` (a list element is removed from the list)."""
    head, rest = path[0], path[1:]
    if rest:
        clone = list(obj) if isinstance(obj, list) else dict(obj)
        clone[head] = _delete(obj[head], rest)  # type: ignore[index]
        return clone
    if isinstance(obj, list):
        return [item for i, item in enumerate(obj) if i != head]
    return {k: v for k, v in obj.items() if k != head}


def _strict_schema(node: Any) -> Any:
    """Turn a pydantic core schema into its strict twin: no coercion, unknown fields refused."""
    if isinstance(node, list):
        return [_strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    kind = node.get("type")
    if not isinstance(kind, str):  # a mapping of field names, one of which may be "type"
        kind = None
    if kind in ("model-fields", "typed-dict", "dataclass-args"):
        node["extra_behavior"] = "forbid"
    if kind == "model" and node.get("schema", {}).get("type") == "model-fields":
        # Validate the fields only: pydantic-core reuses a model class's own (lax) validator for
        # any node naming the class, so the strict twin must not name it.
        inner = {**node["schema"], "ref": node["ref"]} if "ref" in node else node["schema"]
        return _strict_schema(inner)
    if kind == "str" and _KNOWN in node.get("metadata", {}):
        return {"type": "literal", "expected": node["metadata"][_KNOWN]}
    if kind in _LAX_TYPES:
        node.setdefault("strict", False)
    elif kind in _STRICT_TYPES:
        node.setdefault("strict", True)
    for key, item in node.items():
        if key not in ("cls", "config", "metadata", "serialization", "ref"):
            node[key] = _strict_schema(item)
    return node


_STRICT_TYPES: Final = frozenset(
    {"int", "float", "str", "bool", "list", "dict", "tuple", "set", "frozenset", "bytes"}
)
