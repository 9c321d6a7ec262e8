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

   Hot path: when the twin uses only plain JSON nodes, a msgspec type built from it
   (:func:`fast_type`) checks the input first, about four times faster; only what it refuses
   is validated by the twin, so the outcome is the twin's either way (the input is decoded
   JSON: msgspec would take a tuple for a list, JSON has none).

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
from types import GenericAlias
from typing import Any, Final, Generic, Literal, TypeVar, cast

import msgspec
import msgspec.inspect
from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, SchemaValidator

__all__ = ["MAX_PATHS", "KnownValues", "Reader", "Reading", "coerce", "fast_type", "json_path", "resolve"]

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

    __slots__ = ("_fast", "_lax", "_strict", "model")

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self._lax = model.__pydantic_validator__
        schema = _strict_schema(copy.deepcopy(model.__pydantic_core_schema__))
        self._strict = SchemaValidator(schema)
        self._fast = fast_type(schema)

    def check(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The value to publish and its deviations, without building the typed model (hot path)."""
        value = obj if isinstance(obj, dict) else dict(obj)
        if self._fast is not None:
            try:
                _convert(value, self._fast)
                return value, ()
            except msgspec.ValidationError:
                pass  # a deviation (or what msgspec cannot judge): the twin says which
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


# -- the fast check (module rule 2, hot path) ----------------------------------------------------

_convert: Final = msgspec.convert


class _Unsupported(Exception):
    """A schema node :func:`fast_type` does not translate: the twin alone checks that model."""


_SCALARS: Final[dict[str, Any]] = {"str": str, "int": int, "float": float, "bool": bool}
_HARMLESS: Final = frozenset({"type", "strict", "metadata", "serialization", "ref"})
"""Keys of a scalar node that do not constrain its values (any other key makes it unsupported)."""


def fast_type(schema: Any) -> Any:
    """A msgspec type that accepts a decoded JSON value only if the strict twin ``schema`` does.

    Rules:

    1. Only plain JSON nodes translate: ``model-fields`` (unknown fields forbidden, no
       validation aliases) become ``forbid_unknown_fields`` structs (fields renamed, so any key
       works; optional fields get a placeholder default), ``default``, ``nullable``, strict
       ``str``, ``int``, ``float`` (an ``int`` is a ``float``, as for the twin), ``bool``,
       ``list`` without length bounds, ``literal`` of strings, ``any``, ``definitions`` and
       ``definition-ref`` (not recursive). Any other node, or a key that could constrain one
       (``min_length``, ``pattern``, ``ge``...), makes the whole model unsupported: ``None``.
    2. msgspec and the twin agree on decoded JSON (``tests/unit/test_tolerant_fast.py``); where
       msgspec refuses what the twin would accept, the twin is asked anyway (rule 2 of the module).
    """
    try:
        built = _Translator().type_of(schema)
        msgspec.inspect.type_info(built)  # a type msgspec cannot check raises here, never in check()
    except (_Unsupported, TypeError):
        return None
    return built


class _Translator:
    """Core schema -> msgspec type (:func:`fast_type`); ``definition-ref`` targets built once."""

    def __init__(self) -> None:
        self.definitions: dict[str, Any] = {}
        self.built: dict[str, Any] = {}
        self.building: set[str] = set()
        self.structs = 0

    def type_of(self, node: Any) -> Any:
        if not isinstance(node, dict):
            raise _Unsupported(repr(node))
        kind = node.get("type")
        if kind == "definitions":
            _only(node, {"type", "schema", "definitions", "metadata"})
            for target in node["definitions"]:
                ref = target.get("ref") if isinstance(target, dict) else None
                if not isinstance(ref, str):
                    raise _Unsupported("definition without ref")
                self.definitions[ref] = target
            return self.type_of(node["schema"])
        if kind == "definition-ref":
            _only(node, {"type", "schema_ref", "metadata", "serialization"})
            return self._ref(node["schema_ref"])
        if kind in _SCALARS:
            _only(node, _HARMLESS)
            if node.get("strict") is not True:
                raise _Unsupported(f"lax {kind}")
            return _SCALARS[kind]
        if kind == "any":
            _only(node, _HARMLESS)
            return Any
        if kind == "literal":
            _only(node, _HARMLESS | {"expected"})
            expected = node["expected"]
            if not expected or not all(type(v) is str for v in expected):
                raise _Unsupported("literal of non-strings")
            return Literal.__getitem__(tuple(expected))  # Literal[...] of values known at run time
        if kind == "nullable":
            _only(node, _HARMLESS | {"schema"})
            return self.type_of(node["schema"]) | None
        if kind == "default":
            _only(node, _HARMLESS | {"schema", "default"})
            return self.type_of(node["schema"])
        if kind == "list":
            _only(node, _HARMLESS | {"items_schema"})
            if node.get("strict") is not True:
                raise _Unsupported("lax list")
            return GenericAlias(
                list, (self.type_of(node["items_schema"]) if "items_schema" in node else Any,)
            )
        if kind == "model-fields":
            return self._struct(node)
        raise _Unsupported(str(kind))

    def _ref(self, ref: str) -> Any:
        if ref in self.built:
            return self.built[ref]
        if ref in self.building or ref not in self.definitions:
            raise _Unsupported(f"recursive or unknown reference {ref}")
        self.building.add(ref)
        self.built[ref] = built = self.type_of(self.definitions[ref])
        self.building.discard(ref)
        return built

    def _struct(self, node: dict[str, Any]) -> Any:
        _only(
            node,
            {
                "type",
                "fields",
                "computed_fields",
                "extra_behavior",
                "model_name",
                "ref",
                "metadata",
                "strict",
            },
        )
        if node.get("extra_behavior") != "forbid":
            raise _Unsupported("model-fields that allow unknown fields")
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        for i, (name, field) in enumerate(node["fields"].items()):
            _only(
                field,
                {"type", "schema", "metadata", "serialization_alias", "serialization_exclude", "frozen"},
            )
            if field.get("type") != "model-field":
                raise _Unsupported("field")
            inner = field["schema"]
            attribute = f"f{i}"  # any key can be a field: the struct's attributes are renamed to it
            rename[attribute] = name
            if isinstance(inner, dict) and inner.get("type") == "default":
                fields.append((attribute, self.type_of(inner), None))  # the default itself is not needed
            else:
                fields.append((attribute, self.type_of(inner)))
        self.structs += 1
        return msgspec.defstruct(
            f"Fast{self.structs}_{node.get('model_name', 'Model')}",
            fields,
            kw_only=True,
            forbid_unknown_fields=True,
            rename=rename,
        )


def _only(node: dict[str, Any], keys: frozenset[str] | set[str]) -> None:
    if not node.keys() <= keys:
        raise _Unsupported(f"{node.get('type')} with {sorted(set(node) - set(keys))}")
