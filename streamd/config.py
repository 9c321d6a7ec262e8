"""Configuration: one YAML file validated by pydantic before anything starts (DESIGN §4).

Rules:

1. The discriminated union of source (and sink) configs on ``kind`` is the plug-in registry:
   name, schema, documentation and constructor (``build``) live together in each config class.
2. ``${env:NAME}`` and ``${file:PATH}`` are substituted in string values after YAML parsing, so a
   secret can never change the document's structure. A missing variable or file is a config error.
3. Every problem is reported as one line ``path: message (line N)``; secret values never appear
   in errors, logs or reprs (they are :class:`pydantic.SecretStr`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from streamd.config_core import HttpConfig, KafkaConfig, SecurityConfig, SpoolConfig, TopicsConfig
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
    shutdown_grace: Duration = Field(10.0, description="Time allowed to flush Kafka on shutdown.")
    queue_size: int = Field(1024, ge=1, description="Batches buffered between sources and the publisher.")
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


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    """Read, substitute and validate a config file.

    Raises:
        ConfigError: with one line per problem.
    """
    import os

    environ = dict(os.environ) if env is None else env
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror}"]) from None
    return parse_config(text, environ, origin=str(path))


def parse_config(text: str, env: dict[str, str], origin: str = "<config>") -> Config:
    """Validate config text (see :func:`load_config`)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{origin}: invalid YAML: {_yaml_problem(exc)}"]) from None
    lines: Lines = {}
    problems: list[str] = []
    data = _to_data(node, (), lines, env, problems) if node is not None else {}
    if problems:
        raise ConfigError(problems)
    if not isinstance(data, dict):
        raise ConfigError([f"{origin}: the top level must be a mapping"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem_line(err, data, lines) for err in exc.errors()]) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{problem} (line {mark.line + 1})" if mark is not None else problem


def _to_data(
    node: yaml.Node, path: tuple[str | int, ...], lines: Lines, env: dict[str, str], problems: list[str]
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(yaml.safe_load(yaml.serialize(key_node)))
            out[key] = _to_data(value_node, (*path, key), lines, env, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(v, (*path, i), lines, env, problems) for i, v in enumerate(node.value)]
    value = yaml.safe_load(yaml.serialize(node))
    if isinstance(value, str) and "${" in value:
        return _substitute(value, path, lines[path], env, problems)
    return value


def _substitute(
    value: str, path: tuple[str | int, ...], line: int, env: dict[str, str], problems: list[str]
) -> str:
    def repl(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).strip()
        if kind == "env":
            if name not in env:
                problems.append(f"{_dotted(path)}: environment variable {name} is not set (line {line})")
                return ""
            return env[name]
        try:
            return Path(name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            problems.append(f"{_dotted(path)}: cannot read file {name}: {exc.strerror} (line {line})")
            return ""

    return _SUBST.sub(repl, value)


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _problem_line(err: Any, data: Any, lines: Lines) -> str:
    """``sources[1].url: Field required (line 12)``, skipping union tags in pydantic's loc."""
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
    message = err["msg"].removeprefix("Value error, ")
    key = tuple(path)
    while key and key not in lines:
        key = key[:-1]
    line = lines.get(key)
    where = f" (line {line})" if line else ""
    return f"{_dotted(tuple(path))}: {message}{where}"
