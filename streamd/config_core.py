"""Core config sections (kafka, http, spool): no vendor imports, so any module may use them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from streamd.config_types import Duration, Secret, StrictModel, host_port


class SecurityConfig(StrictModel):
    """How streamd authenticates to Kafka."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username: str | None = None
    password: Secret | None = None
    ca_file: Path | None = Field(None, description="CA bundle (PEM) to verify the brokers.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    check_hostname: bool = True

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> SecurityConfig:
        if self.protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError(f"sasl_mechanism is required with protocol {self.protocol}")
            if not self.username or self.password is None:
                raise ValueError(f"username and password are required with protocol {self.protocol}")
        return self


class TopicsConfig(StrictModel):
    """Topic creation at start-up."""

    create: bool = Field(True, description="Create missing topics at start-up (else rely on auto-creation).")
    partitions: int = Field(6, ge=1)
    replication_factor: int | None = Field(
        None, ge=1, description="Replicas per partition; default min(3, number of brokers)."
    )


class SchemaRegistryConfig(StrictModel):
    """A Confluent-compatible Schema Registry where each topic's value schema is registered at start."""

    url: str = Field(
        description="Base URL of the registry (https://registry:8081); several, comma-separated, are tried in turn.",
        pattern=r"^https?://[^,\s]+(\s*,\s*https?://[^,\s]+)*$",
    )
    username: str | None = Field(None, description="Basic auth user (Confluent Cloud: the API key).")
    password: Secret | None = Field(
        None, description="Basic auth password (Confluent Cloud: the API secret)."
    )
    bearer_token: Secret | None = Field(None, description="A static bearer token, instead of basic auth.")
    logical_cluster: str = Field(
        "", description="Sent as target-sr-cluster with bearer_token (Confluent Cloud: lsrc-...)."
    )
    ca_file: Path | None = Field(None, description="CA bundle (PEM) to verify the registry's certificate.")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: Path | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    timeout: Duration = Field(10.0, gt=0, description="Timeout of one registry request.")
    startup_timeout: Duration = Field(
        30.0,
        gt=0,
        description=(
            "A registry that cannot be reached (or answers 5xx) at start is retried for this long, then "
            "streamd exits non-zero with one line; an incompatible schema or refused credentials fail at once."
        ),
    )

    @model_validator(mode="after")
    def _one_auth(self) -> SchemaRegistryConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.username is not None and self.bearer_token is not None:
            raise ValueError("basic auth (username/password) or bearer_token, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class KafkaConfig(StrictModel):
    """Where and how events are published."""

    bootstrap_servers: str = Field(
        "embedded",
        description='"host:port,host:port", or "embedded" to start the bundled Kafka-protocol broker.',
    )
    topic_prefix: str = Field("streamd.", pattern=r"^[A-Za-z0-9._-]*$")
    client_id: str = "streamd"

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_are_host_ports(cls, value: str) -> str:
        if value.strip() == "embedded":
            return value
        servers = [s.strip() for s in value.split(",")]
        if not all(servers):
            raise ValueError(f"an empty entry in {value!r}: expected host:port,host:port")
        for server in servers:
            host, _ = host_port(server)
            if not host:
                raise ValueError(f"expected host:port, got {server!r}")
        return value

    acks: Literal["all", "1", "0", 1, 0, -1] = Field(
        "all", description="all (default) waits for every in-sync replica; 1 or 0 trade safety for latency."
    )
    compression: Literal["zstd", "gzip", "lz4", "snappy", "none"] = "zstd"
    linger: Duration = Field(0.005, description="How long the producer waits to fill a batch.")
    batch_size: int = Field(262_144, ge=1024, description="Producer batch size in bytes.")
    max_request_size: int = Field(1_048_576, ge=1024)
    idempotence: Literal["auto"] | bool = Field(
        "auto", description="auto = on for real Kafka, off for the embedded broker (it lacks InitProducerId)."
    )
    startup_timeout: Duration = Field(30.0, description="Give up (exit non-zero) if Kafka is unreachable.")
    delivery_timeout: Duration = Field(
        30.0, description="The producer's request timeout, and how long a spool drain waits for Kafka."
    )
    spool_after: Duration = Field(
        2.0,
        gt=0,
        description=(
            "Once Kafka has acknowledged nothing for this long, what waits for it is written to the outage "
            "spool (a connection error spools at once), so durable callers (webhooks, pollers) never wait "
            "out an outage; a Kafka that is busy but acknowledging gets up to delivery_timeout."
        ),
    )
    security: SecurityConfig = SecurityConfig()
    topics: TopicsConfig = TopicsConfig()
    schema_registry: SchemaRegistryConfig | None = Field(
        None,
        description=(
            "Register the JSON Schema of each topic's value under {topic}-value at start (after a "
            "compatibility check); needs the schema-registry extra."
        ),
    )
    value_format: Literal["json", "confluent-json"] = Field(
        "json",
        description=(
            "json: the value is the event's JSON; confluent-json: Confluent's wire format (byte 0, the "
            "4-byte schema id, the JSON), which needs schema_registry."
        ),
    )

    @model_validator(mode="after")
    def _idempotence_needs_acks_all(self) -> KafkaConfig:
        if self.idempotence is True and str(self.acks) not in ("all", "-1"):
            raise ValueError(f"idempotence: true requires acks: all (got acks: {self.acks})")
        if self.value_format == "confluent-json" and self.schema_registry is None:
            raise ValueError("value_format: confluent-json needs schema_registry (the ids come from it)")
        return self

    @property
    def acks_all(self) -> bool:
        """True when the producer waits for every in-sync replica."""
        return str(self.acks) in ("all", "-1")

    @property
    def acks_warning(self) -> str | None:
        """What an operator must hear when ``acks`` is not ``all`` (``None`` when it is)."""
        if self.acks_all:
            return None
        return (
            f"kafka.acks is {self.acks}, not all: an event Kafka acknowledged can still be lost when a "
            "broker fails (streamd's delivery guarantee assumes acks: all)"
        )

    @property
    def embedded(self) -> bool:
        """True when streamd starts its own broker."""
        return self.bootstrap_servers.strip() == "embedded"


class HttpConfig(StrictModel):
    """The one HTTP port: health, metrics, webhooks, wallboard."""

    listen: str = Field(
        "0.0.0.0:8080", description="host:port to bind (IPv6: [::]:8080); port 0 = any free port."
    )
    auth_token: Secret | None = Field(
        None, description="Bearer token required by the feed API and wallboard."
    )
    cors_origins: list[str] = Field(default_factory=list)
    max_connections: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Connections held open at once; one more is answered 503 and closed at once.",
    )
    header_timeout: Duration = Field(
        10.0,
        gt=0,
        le=300,
        description=(
            "A request line and headers must arrive within this after the connection opened (or after "
            "the first byte of a further request on a kept-alive connection); else it is closed."
        ),
    )
    max_header_bytes: int = Field(
        16_384,
        ge=1024,
        le=1_048_576,
        description="Largest request line plus headers; larger is answered 431.",
    )

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        host_port(value)
        return value

    @property
    def host(self) -> str:
        """The bind address."""
        return host_port(self.listen)[0] or "0.0.0.0"

    @property
    def port(self) -> int:
        """The bind port (0 = any free port)."""
        return host_port(self.listen)[1]


class SpoolConfig(StrictModel):
    """The SQLite outage spool (also holds poll cursors)."""

    path: Path = Path("./streamd-spool.db")
    max_bytes: int = Field(1_073_741_824, ge=1_048_576)
    write_ahead: bool = Field(
        True,
        description=(
            "Push sources (O2G chunk channel, Xima websocket) write what they read to the spool before "
            "it counts as received, so a crash loses at most the last commit_interval of it."
        ),
    )
    commit_interval: Duration = Field(
        0.02, gt=0, le=1, description="Group commit of the write-ahead: one fsync per interval at most."
    )


class ClusterConfig(StrictModel):
    """Several replicas sharing the sources and sinks through a Kafka consumer group
    (docs/architecture.md "Several replicas")."""

    enabled: bool = Field(
        False,
        description="Join the consumer group group_id: each source and sink runs on exactly one live replica.",
    )
    group_id: str = Field(
        "streamd",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The consumer group of the replicas (one per deployment sharing a config).",
    )
    session_timeout: Duration = Field(
        10.0,
        ge=3,
        le=300,
        description=(
            "A replica that stops heartbeating for this long loses its sources to another one; a replica "
            "that cannot commit to Kafka for half of it stops its sources first (fencing)."
        ),
    )
    ride_through_outage: bool = Field(
        True,
        description=(
            "Keep sources running (spooling) while every Kafka broker refuses connections: Kafka is "
            "then down for every replica and none can take a source over. A broker that cannot be "
            "reached (timeout) proves nothing and still fences. Set false where a firewall rejects "
            "rather than drops, or where the brokers forget consumer groups on a restart."
        ),
    )


class TracingConfig(StrictModel):
    """OpenTelemetry tracing (needs the otel extra); the exporter is configured by OTEL_* variables."""

    enabled: bool = Field(
        False,
        description=(
            "Trace vendor requests and published units, and write ce_traceparent on their records; also "
            "on when OTEL_TRACES_EXPORTER is set (otlp, console), never when OTEL_SDK_DISABLED=true."
        ),
    )
