"""Configuration: one YAML file validated by pydantic before anything starts (README "Configuration"; every field: ``streamd schema``).

Rules:

1. The discriminated union of source (and sink) configs on ``kind`` is the plug-in registry:
   name, schema, documentation and constructor (``build``) live together in each config class.
2. ``${env:NAME}`` and ``${file:PATH}`` are substituted in string values after YAML parsing, so a
   secret can never change the document's structure. A missing variable or file is a config error.
3. Every problem is reported as one line ``path: message (line N)``; secret values never appear
   in errors, logs or reprs (they are :class:`pydantic.SecretStr`).
"""

from __future__ import annotations

import difflib
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from streamd.config_core import (
    ClusterConfig,
    HttpConfig,
    KafkaConfig,
    SecurityConfig,
    SpoolConfig,
    TopicsConfig,
    TracingConfig,
)
from streamd.config_types import Duration, StrictModel
from streamd.errors import ConfigError
from streamd.sinks.calabrio_rtdc import CalabrioRtdcSinkConfig
from streamd.sources.alvaria.config import AlvariaSourceConfig
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.o2g.config import O2GSourceConfig
from streamd.sources.xima.config import XimaSourceConfig
from streamd.wallboard.config import WallboardConfig

SourceConfig = Annotated[
    O2GSourceConfig | XimaSourceConfig | AlvariaSourceConfig | CalabrioSourceConfig,
    Field(discriminator="kind"),
]
SinkConfig = Annotated[CalabrioRtdcSinkConfig, Field(discriminator="kind")]

__all__ = [
    "ClusterConfig",
    "Config",
    "HttpConfig",
    "KafkaConfig",
    "SecurityConfig",
    "SinkConfig",
    "SourceConfig",
    "SpoolConfig",
    "TopicsConfig",
    "load_config",
    "parse_config",
]


class Config(StrictModel):
    """The whole streamd configuration."""

    kafka: KafkaConfig = KafkaConfig()
    http: HttpConfig = HttpConfig()
    spool: SpoolConfig = SpoolConfig()
    wallboard: WallboardConfig = WallboardConfig()
    cluster: ClusterConfig = ClusterConfig()
    tracing: TracingConfig = TracingConfig()
    shutdown_grace: Duration = Field(10.0, description="Time allowed to flush Kafka on shutdown.")
    queue_size: int = Field(1024, ge=1, description="Batches buffered between sources and the publisher.")
    max_buffered_events: int = Field(
        20_000,
        ge=1,
        description="Events held in memory between the sources and Kafka's acknowledgement (queued or "
        "in flight); a source pushing more waits, its vendor's backlog stays on the vendor's side "
        "(the O2G chunk channel's socket, a poll not yet made).",
    )
    failed_retry: Duration = Field(
        300.0,
        gt=0,
        description="How often a failed source, sink or poller job (refused credentials, a 403, a scope "
        "that no longer exists) is tried again; the rest of the daemon goes on meanwhile.",
    )
    readiness: Literal["all", "any"] = Field(
        "any",
        description="/readyz: any = ready while Kafka is usable and at least one source runs (or none "
        "is configured); all = every source and sink must be running or retrying.",
    )
    sources: list[SourceConfig] = Field(default_factory=list)
    sinks: list[SinkConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_unique_and_referenced(self) -> Config:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique: {', '.join(dupes)}")
        for sink in self.sinks:
            if sink.from_ not in names:
                raise ValueError(f"sink {sink.name!r} reads from unknown source {sink.from_!r}")
        for source in self.sources:
            deadline = getattr(source, "webhook_deadline", None)
            webhook = getattr(source, "delivery", None) == "webhook"
            if webhook and deadline is not None and deadline <= self.kafka.spool_after:
                raise ValueError(
                    f"source {source.name!r}: webhook_deadline ({deadline:g}s) must be longer than "
                    f"kafka.spool_after ({self.kafka.spool_after:g}s), or every POST is refused while "
                    "Kafka is down although the spool would take it"
                )
        return self


# --- loading -------------------------------------------------------------------------------

_SUBST = re.compile(r"\$\{(env|file):([^}]+)\}")
Lines = dict[tuple[str | int, ...], int]


def load_config(path: str | Path, env: dict[str, str] | None = None, *, no_env: bool = False) -> Config:
    """Read, substitute and validate a config file.

    Args:
        path: the YAML file.
        env: the environment for ``${env:...}`` (default: the process's).
        no_env: check ``${env:...}`` / ``${file:...}`` for syntax only and put placeholders in
            their place (lint a config without its secrets, e.g. in CI).

    Raises:
        ConfigError: every problem found, one line each, each naming the file.
    """
    import os

    environ = dict(os.environ) if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    try:
        return parse_config(text, environ, origin=str(path), no_env=no_env)
    except ConfigError as exc:
        raise ConfigError(
            [p if p.startswith(f"{path}: ") else f"{path}: {p}" for p in exc.problems]
        ) from None


def parse_config(text: str, env: dict[str, str], origin: str = "<config>", *, no_env: bool = False) -> Config:
    """Validate config text (see :func:`load_config`); every problem is reported in one pass."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{origin}: invalid YAML: {_yaml_problem(exc)}"]) from None
    lines: Lines = {}
    problems: list[str] = []
    unresolved: set[tuple[str | int, ...]] = set()
    data = (
        _to_data(node, (), lines, Substitution(env, problems, unresolved, no_env)) if node is not None else {}
    )
    if not isinstance(data, dict):
        raise ConfigError([*problems, f"{origin}: the top level must be a mapping"])
    problems += _duplicate_names(data, lines)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            if _under(err, data, unresolved):
                continue  # its substitution failed: already reported
            line = _problem_line(err, data, lines)
            if not (problems and "source names must be unique" in line):
                problems.append(line)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


@dataclass
class Substitution:
    """How ``${env:...}`` / ``${file:...}`` are resolved while reading the tree."""

    env: dict[str, str]
    problems: list[str]
    unresolved: set[tuple[str | int, ...]]
    """Paths whose substitution failed (their validation errors would only repeat it)."""
    no_env: bool = False


_PLACEHOLDER = "placeholder-for-{name}"


def _to_data(node: yaml.Node, path: tuple[str | int, ...], lines: Lines, subst: Substitution) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(yaml.safe_load(yaml.serialize(key_node)))
            out[key] = _to_data(value_node, (*path, key), lines, subst)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(v, (*path, i), lines, subst) for i, v in enumerate(node.value)]
    value = yaml.safe_load(yaml.serialize(node))
    if isinstance(value, str) and "${" in value:
        return _substitute(value, path, lines[path], subst)
    return value


def _substitute(value: str, path: tuple[str | int, ...], line: int, subst: Substitution) -> str:
    def repl(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).strip()
        if subst.no_env:
            return _PLACEHOLDER.format(name=re.sub(r"\W", "-", name))
        if kind == "env":
            if name not in subst.env:
                subst.problems.append(
                    f"{_dotted(path)}: environment variable {name} is not set (line {line})"
                )
                subst.unresolved.add(path)
                return _PLACEHOLDER.format(name=name)
            return subst.env[name]
        try:
            return Path(name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            subst.problems.append(f"{_dotted(path)}: cannot read file {name}: {exc.strerror} (line {line})")
            subst.unresolved.add(path)
            return _PLACEHOLDER.format(name="file")

    out = _SUBST.sub(repl, value)
    rest = _SUBST.sub("", value)
    if "${" in rest:
        subst.problems.append(
            f"{_dotted(path)}: unrecognised substitution in {value!r}: use ${{env:NAME}} or ${{file:/path}} (line {line})"
        )
        subst.unresolved.add(path)
    return out


def _duplicate_names(data: dict[str, Any], lines: Lines) -> list[str]:
    """One line per repeated source or sink name, at the repeat's own line."""
    out: list[str] = []
    for section, what in (("sources", "source"), ("sinks", "sink")):
        seen: dict[str, int] = {}
        items = data.get(section)
        for i, item in enumerate(items if isinstance(items, list) else []):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            here = lines.get((section, i, "name"), lines.get((section, i), 0))
            if name in seen:
                out.append(
                    f"{section}[{i}].name: duplicate {what} name {name!r} (first at line {seen[name]}) (line {here})"
                )
            else:
                seen[name] = here
    return out


def _under(err: Any, data: Any, unresolved: set[tuple[str | int, ...]]) -> bool:
    path = _path_of(err, data)
    return any(path[: len(u)] == u for u in unresolved)


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _path_of(err: Any, data: Any) -> tuple[str | int, ...]:
    """The data path of a pydantic error, without the union tags pydantic puts in its ``loc``."""
    path: list[str | int] = []
    cursor = data
    for part in err["loc"]:
        if (
            isinstance(cursor, dict)
            and isinstance(part, str)
            and part not in cursor
            and cursor.get("kind") == part
        ):
            continue  # the discriminator tag pydantic inserts for tagged unions
        path.append(part)
        cursor = (
            cursor.get(part)
            if isinstance(cursor, dict)
            else (
                cursor[part]
                if isinstance(cursor, list) and isinstance(part, int) and part < len(cursor)
                else None
            )
        )
    return tuple(path)


_PATTERNS = {
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$": (
        "expected a name of letters, digits, '_', '.' and '-' (at most 63), starting with a letter or digit"
    ),
    r"^[A-Za-z0-9._-]*$": "expected letters, digits, '.', '_' and '-' only",
    r"^https?://": "expected an http:// or https:// URL",
}


def _message(err: Any, data: Any, path: tuple[str | int, ...]) -> str:
    """pydantic's message in plain words: no regex, a suggestion for a misspelled key."""
    kind = err["type"]
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern", "")
        return _PATTERNS.get(pattern, "does not have the expected form")
    if kind == "extra_forbidden" and path and isinstance(path[-1], str):
        known = _known_keys(path[:-1], data)
        close = difflib.get_close_matches(path[-1], known, n=1, cutoff=0.6)
        hint = (
            f": did you mean `{close[0]}`?"
            if close
            else (f" (known: {', '.join(sorted(known))})" if known else "")
        )
        return f"unknown key{hint}"
    return str(err["msg"]).removeprefix("Value error, ")


def _known_keys(path: tuple[str | int, ...], data: Any) -> list[str]:
    """The field names allowed at ``path`` (the config models walked along the data)."""
    annotation: Any = Config  # resolved against the value it describes (a list item picks its kind)
    cursor = data
    for part in path:
        if isinstance(part, int):
            cursor = cursor[part] if isinstance(cursor, list) and part < len(cursor) else None
            continue
        model = _model_of(annotation, cursor)
        field = (
            model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        )
        if field is None:
            return []
        annotation = field.annotation
        cursor = cursor.get(part) if isinstance(cursor, dict) else None
    model = _model_of(annotation, cursor)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _model_of(annotation: Any, value: Any) -> Any:
    """The model an annotation stands for at ``value`` (lists, optionals and tagged unions unwrapped)."""
    candidates = [annotation]
    while candidates:
        tp = candidates.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            kind = value.get("kind") if isinstance(value, dict) else None
            field = tp.model_fields.get("kind")
            if (
                kind is None
                or field is None
                or kind in typing.get_args(field.annotation)
                or field.default == kind
            ):
                return tp
            continue
        candidates.extend(typing.get_args(tp))
    return None


def _problem_line(err: Any, data: Any, lines: Lines) -> str:
    """``sources[1].url: Field required (line 12)``, skipping union tags in pydantic's loc."""
    path = _path_of(err, data)
    message = _message(err, data, path)
    key = path
    while key and key not in lines:
        key = key[:-1]
    line = lines.get(key)
    where = f" (line {line})" if line else ""
    return f"{_dotted(path)}: {message}{where}"
