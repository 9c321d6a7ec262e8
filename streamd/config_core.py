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

    @model_validator(mode="after")
    def _idempotence_needs_acks_all(self) -> KafkaConfig:
        if self.idempotence is True and str(self.acks) not in ("all", "-1"):
            raise ValueError(f"idempotence: true requires acks: all (got acks: {self.acks})")
        return self

    @property
    def acks_all(self) -> bool:
        """True when the producer waits for every in-sync replica."""
        return str(self.acks) in ("all", "-1")

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
