"""Schema Registry: register each topic's value schema at start (README "The Kafka contract").

Rules:

1. Optional (``kafka.schema_registry``, the ``schema-registry`` extra: confluent-kafka's
   ``AsyncSchemaRegistryClient``). Without it nothing here runs and values are plain JSON.
2. Subjects follow Confluent's default TopicNameStrategy: ``{prefix}{topic}-value``. A topic
   carries several ce_types, so its schema (JSON Schema, draft 2020-12) is ``anyOf`` the schemas
   of its ce_types from :func:`streamd.schemas.events_schema`, with the ``$defs`` they refer to.
   The topics registered are those of the configured sources' vendors, the canonical topics and
   the dead-letter topic (:func:`topic_types`).
3. Per subject, once at start: a lookup (the same schema already registered: its id is reused,
   nothing is written); else a compatibility check against the latest version (a subject that
   does not exist yet has nothing to be compatible with); else registration. An incompatible
   schema, refused credentials, a certificate that does not verify or any other 4xx is a
   :class:`~streamd.errors.FatalError` at once, naming the subject.
4. A registry that cannot be reached (or answers 5xx) is retried until
   ``schema_registry.startup_timeout``, then streamd stops with one line (exit non-zero), as for
   Kafka at start: with ``confluent-json`` no record can be written without the ids, and a
   registration the operator asked for is not silently skipped. After start the registry is
   never called again (ids are fixed for the process; spooled records keep theirs).
5. ``value_format: confluent-json``: the pipeline's encoder frames each value with its topic's
   id (:func:`streamd.publish.encoding.confluent_json`); ``json`` keeps :func:`encode`.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from streamd.config_core import KafkaConfig, SchemaRegistryConfig
from streamd.errors import FatalError, TransientError
from streamd.events import (
    AGENT_ADHERENCE_TOPIC,
    AGENT_STATE_TOPIC,
    DEADLETTER_TOPIC,
    QUEUE_METRICS_TOPIC,
    SOURCE_STATUS_TOPIC,
)
from streamd.publish.encoding import Encode, confluent_json, encode
from streamd.retry import backoff
from streamd.runtime import retry_until
from streamd.sources.calabrio.models import ACTIVITY_TOPIC, ACTIVITY_TYPE, ADHERENCE_TOPIC, ADHERENCE_TYPE

if TYPE_CHECKING:
    from streamd.config import Config

log = logging.getLogger("streamd.registry")

TOPIC_OF_TYPE: dict[str, str] = {
    "streamd.agent.State": AGENT_STATE_TOPIC,
    "streamd.agent.Adherence": AGENT_ADHERENCE_TOPIC,
    "streamd.queue.Metric": QUEUE_METRICS_TOPIC,
    "streamd.deadletter": DEADLETTER_TOPIC,
    "streamd.source.Gap": SOURCE_STATUS_TOPIC,
    "streamd.source.Status": SOURCE_STATUS_TOPIC,
    ACTIVITY_TYPE: ACTIVITY_TOPIC,
    ADHERENCE_TYPE: ADHERENCE_TOPIC,
}
"""ce_types whose topic is not the ce_type without its last segment (``o2g.agent.X`` -> ``o2g.agent``)."""


def topic_of(ce_type: str) -> str:
    """The topic (without prefix) events of ``ce_type`` are published on.

    Raises:
        ValueError: a ``streamd.*`` type missing from :data:`TOPIC_OF_TYPE` (streamd's own types
            are not named after their topic).
    """
    topic = TOPIC_OF_TYPE.get(ce_type)
    if topic is not None:
        return topic
    if ce_type.startswith("streamd."):
        raise ValueError(f"{ce_type}: add its topic to streamd.publish.registry.TOPIC_OF_TYPE")
    return ce_type.rsplit(".", 1)[0]


def topic_types(vendors: Iterable[str] | None = None) -> dict[str, list[str]]:
    """``topic -> ce_types`` of every known event type (rule 2); ``vendors``: only their topics and
    streamd's own (canonical, dead letters)."""
    from streamd.schemas import event_models

    keep = None if vendors is None else {*vendors, "streamd"}
    out: dict[str, list[str]] = {}
    for ce_type in event_models():
        if keep is None or ce_type.split(".", 1)[0] in keep:
            out.setdefault(topic_of(ce_type), []).append(ce_type)
    return out


def subject_schemas(topics: Mapping[str, Iterable[str]], prefix: str) -> dict[str, dict[str, Any]]:
    """``{prefix}{topic}-value -> JSON Schema`` of the topic's value: ``anyOf`` its ce_types'
    schemas, with the ``$defs`` they reach (rule 2)."""
    from streamd.schemas import events_schema

    document = events_schema()
    defs: dict[str, Any] = document["$defs"]
    out = {}
    for topic, ce_types in sorted(topics.items()):
        variants = [document["events"][t] for t in ce_types]
        schema: dict[str, Any] = {
            "$schema": document["$schema"],
            "title": f"{prefix}{topic} value",
            "description": "The Kafka value of one of the ce_types: " + ", ".join(ce_types),
            "anyOf": variants,
        }
        used = _reachable(variants, defs)
        if used:
            schema["$defs"] = {name: defs[name] for name in sorted(used)}
        out[f"{prefix}{topic}-value"] = schema
    return out


def _reachable(nodes: list[Any], defs: Mapping[str, Any]) -> set[str]:
    """Names of the ``$defs`` entries the ``$ref``s in ``nodes`` reach, transitively."""
    found: set[str] = set()
    stack: list[Any] = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name not in found and name in defs:
                    found.add(name)
                    stack.append(defs[name])
            stack.extend(v for k, v in node.items() if k != "$ref")
    return found


def client_conf(cfg: SchemaRegistryConfig) -> dict[str, Any]:
    """confluent-kafka's ``AsyncSchemaRegistryClient`` configuration for ``cfg``."""
    conf: dict[str, Any] = {"url": cfg.url, "timeout": cfg.timeout, "max.retries": 1}
    if cfg.username is not None and cfg.password is not None:
        conf["basic.auth.user.info"] = f"{cfg.username}:{cfg.password.get_secret_value()}"
    if cfg.bearer_token is not None:
        conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
        conf["bearer.auth.token"] = cfg.bearer_token.get_secret_value()
        conf["bearer.auth.logical.cluster"] = cfg.logical_cluster
    if cfg.ca_file is not None:
        conf["ssl.ca.location"] = str(cfg.ca_file)
    if cfg.cert_file is not None and cfg.key_file is not None:
        conf["ssl.certificate.location"] = str(cfg.cert_file)
        conf["ssl.key.location"] = str(cfg.key_file)
    return conf


class _Unreachable(TransientError):
    """The registry did not answer, or answered 5xx: worth another attempt."""


async def register(kafka: KafkaConfig, vendors: Iterable[str] | None = None) -> dict[str, int]:
    """Register every topic's value schema (rules 2-4); ``full topic name -> schema id``.

    Raises:
        FatalError: an incompatible schema, refused credentials or another 4xx (at once), or the
            registry unreachable for ``startup_timeout``; also when the extra is not installed.
    """
    cfg = kafka.schema_registry
    if cfg is None:
        return {}
    try:
        from confluent_kafka.schema_registry import AsyncSchemaRegistryClient
    except ImportError as exc:
        raise FatalError(
            f"kafka.schema_registry needs the schema-registry extra (pip install 'streamd[schema-registry]'): {exc}"
        ) from None
    subjects = subject_schemas(topic_types(vendors), kafka.topic_prefix)
    ids: dict[str, int] = {}
    try:
        client = AsyncSchemaRegistryClient(client_conf(cfg))
    except (ValueError, TypeError, OSError, ssl.SSLError) as exc:
        raise FatalError(f"kafka.schema_registry: {exc}") from None

    async def register_missing() -> None:
        for subject, schema in subjects.items():
            if subject not in ids:
                ids[subject] = await _register_one(client, subject, schema)

    try:
        await retry_until(  # rule 4: one line when it gives up, with the time really waited
            register_missing,
            within=cfg.startup_timeout,
            what=f"schema registry {cfg.url}",
            setting="kafka.schema_registry.startup_timeout",
            delays=lambda: backoff(0.5, 2.0, 5.0, rng=lambda: 1.0),  # 0.5, 1, 2, 4, 5 s ...
        )
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
    log.info(
        "schema registry %s: %d subjects registered ({topic}-value), values as %s",
        cfg.url,
        len(ids),
        kafka.value_format,
    )
    return {subject.removesuffix("-value"): schema_id for subject, schema_id in ids.items()}


async def _register_one(client: Any, subject: str, schema: dict[str, Any]) -> int:
    """Lookup, else compatibility check, else register (rule 3)."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryError

    candidate = Schema(json.dumps(schema, sort_keys=True), "JSON")
    step = "lookup"
    try:
        try:
            found = await client.lookup_schema(subject, candidate)
            return int(found.schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise
        step = "compatibility check"
        try:
            compatible = await client.test_compatibility(subject, candidate)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:  # 40401: a new subject, nothing to be compatible with
                raise
            compatible = True
        if not compatible:
            raise FatalError(
                f"schema registry: the value schema of {subject} is not compatible with its latest "
                "registered version (the subject's compatibility level refuses it): streamd's events "
                "changed incompatibly; register it by hand or relax the subject's compatibility"
            )
        step = "registration"
        return int(await client.register_schema(subject, candidate))
    except SchemaRegistryError as exc:
        status = exc.http_status_code
        if status >= 500 or status in (408, 429):
            raise _Unreachable(f"{subject} {step}: HTTP {status} {exc.error_message}") from None
        what = "credentials refused" if status in (401, 403) else f"HTTP {status}"
        raise FatalError(
            f"schema registry: {subject} {step}: {what}: {exc.error_message} (error code {exc.error_code})"
        ) from None
    except Exception as exc:
        if _untrusted(exc):
            raise FatalError(f"schema registry: TLS certificate not trusted: {exc}") from None
        if _is_transport(exc):
            raise _Unreachable(f"{subject} {step}: {type(exc).__name__}: {exc or 'no answer'}") from None
        raise


def _is_transport(exc: BaseException) -> bool:
    """An error of the HTTP client before any answer (connection refused, timeout, DNS)."""
    if isinstance(exc, OSError):
        return True
    module = type(exc).__module__
    return module.startswith(("httpx", "httpcore")) and any(
        c.__name__ in ("TransportError", "TimeoutException", "NetworkError") for c in type(exc).__mro__
    )


def _untrusted(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


async def value_encoder(config: Config) -> Encode:
    """The pipeline's record encoder for ``config`` (rule 5), after registering the schemas when a
    registry is configured (rules 3-4). Without ``kafka.schema_registry``: :func:`encode`, at once.

    Raises:
        FatalError: as :func:`register`.
    """
    kafka = config.kafka
    if kafka.schema_registry is None:
        return encode
    vendors = {s.kind for s in config.sources}
    ids = await register(kafka, vendors)
    return confluent_json(ids) if kafka.value_format == "confluent-json" else encode
