"""Config: examples validate, each kind of error gives its field-path line and exit 2, secrets stay hidden."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamd.cli import main
from streamd.config import load_config, parse_config
from streamd.config_types import parse_duration
from streamd.errors import ConfigError

EXAMPLES = sorted((Path(__file__).parents[2] / "config").glob("*.yaml"))


def _env_for(text: str) -> dict[str, str]:
    return {name: f"dummy-{name.lower()}" for name in re.findall(r"\$\{env:([^}]+)\}", text)}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_configs_pass_check_config(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in _env_for(path.read_text()).items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", "-c", str(path)]) == 0
    assert ": ok" in capsys.readouterr().out


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env or {})
    return info.value.problems


def test_missing_field_names_path_and_line() -> None:
    text = "sources:\n  - kind: xima\n    name: cr1\n    api_key: k\n"
    assert problems(text) == ["sources[0].url: Field required (line 2)"]


def test_second_source_error_is_indexed() -> None:
    text = (
        "sources:\n"
        "  - {kind: xima, name: a, url: 'https://x', api_key: k}\n"
        "  - kind: xima\n"
        "    name: b\n"
        "    url: 'https://y'\n"
        "    api_key: k\n"
        "    interval: soon\n"
    )
    [line] = problems(text)
    assert line.startswith("sources[1].interval: invalid duration 'soon'")
    assert line.endswith("(line 7)")


def test_unknown_kind_and_unknown_field() -> None:
    assert problems("sources:\n  - {kind: genesys, name: g}\n")[0].startswith(
        "sources[0]: Input tag 'genesys'"
    )
    assert problems("kafka:\n  bootstrap: x\n") == [
        "kafka.bootstrap: unknown key: did you mean `bootstrap_servers`? (line 2)"
    ]


def test_several_problems_one_line_each() -> None:
    found = problems("kafka:\n  compression: brotli\nhttp:\n  listen: nope\nshutdown_grace: -3\n")
    assert [p.split(":")[0] for p in found] == ["kafka.compression", "http.listen", "shutdown_grace"]


def test_duplicate_source_names() -> None:
    text = "sources:\n  - {kind: xima, name: a, url: 'https://x', api_key: k}\n  - {kind: xima, name: a, url: 'https://y', api_key: k}\n"
    assert problems(text) == ["sources[1].name: duplicate source name 'a' (first at line 2) (line 3)"]


def test_env_and_file_substitution(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cr3t-from-file\n")
    text = f"sources:\n  - {{kind: xima, name: a, url: '${{env:XURL}}', api_key: '${{file:{secret}}}'}}\n"
    cfg = parse_config(text, {"XURL": "https://cr.example"})
    source = cfg.sources[0]
    assert source.url == "https://cr.example"  # type: ignore[union-attr]
    assert source.api_key.get_secret_value() == "s3cr3t-from-file"  # type: ignore[union-attr]
    assert "s3cr3t" not in repr(cfg)
    assert "s3cr3t" not in str(cfg)


def test_missing_env_var_and_file_are_config_errors() -> None:
    text = "kafka:\n  security:\n    password: ${env:KAFKA_PW}\n    ca_file: ${file:/nonexistent/ca}\n"
    assert problems(text) == [
        "kafka.security.password: environment variable KAFKA_PW is not set (line 3)",
        "kafka.security.ca_file: cannot read file /nonexistent/ca: No such file or directory (line 4)",
    ]


def test_secrets_never_in_error_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "kafka:\n  security:\n    protocol: SASL_SSL\n    password: ${env:PW}\n"
        "sources:\n  - {kind: xima, name: a, url: 'ftp://x', api_key: '${env:KEY}', interval: 0}\n"
    )
    env = {"PW": "hunter2-kafka", "KEY": "hunter2-xima"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "kafka.security" in err
    assert "sources[0]" in err
    assert "hunter2" not in err


def test_invalid_yaml_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed\n")
    assert main(["check-config", "-c", str(bad)]) == 2
    assert "invalid YAML" in capsys.readouterr().err
    assert main(["check-config", "-c", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_load_config_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    cfg = load_config(path, env={})
    assert cfg.kafka.embedded
    assert cfg.kafka.compression == "zstd"
    assert cfg.kafka.acks == "all"
    assert cfg.shutdown_grace == 10.0
    assert cfg.http.port == 8080


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("5s", 5), ("15m", 900), ("1h", 3600), (30, 30), ("2.5", 2.5)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["-1s", "5 parsecs", True, None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_schema_commands(capsys: pytest.CaptureFixture[str]) -> None:
    import orjson

    assert main(["schema"]) == 0
    schema = orjson.loads(capsys.readouterr().out)
    assert "sources" in schema["properties"]


def test_idempotence_true_needs_acks_all() -> None:
    assert problems("kafka:\n  acks: '1'\n  idempotence: true\n") == [
        "kafka: idempotence: true requires acks: all (got acks: 1) (line 2)"
    ]
    cfg = parse_config("kafka:\n  acks: '1'\n", {})
    from streamd.publish.kafka import producer_kwargs

    assert producer_kwargs(cfg.kafka, "k:9092", embedded=False)["enable_idempotence"] is False
    assert producer_kwargs(parse_config("", {}).kafka, "k:9092", embedded=False)["enable_idempotence"] is True
    assert producer_kwargs(parse_config("", {}).kafka, "k:9092", embedded=True)["enable_idempotence"] is False


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('http:\n  auth_token: "${env:EMPTY}"\n', "http.auth_token"),
        (
            "sources:\n  - kind: o2g\n    name: p\n    url: https://o\n    username: u\n    password: pw\n"
            '    delivery: webhook\n    webhook_public_url: https://me/webhooks/o2g/p\n    webhook_secret: "${env:EMPTY}"\n',
            "sources[0].webhook_secret",
        ),
        ("sources:\n  - {kind: xima, name: c, url: 'https://x', api_key: '  '}\n", "sources[0].api_key"),
    ],
)
def test_an_empty_secret_is_a_config_error(text: str, field: str) -> None:
    """An ``${env:...}`` resolving to "" must not turn a protection off without a word."""
    [line] = problems(text, {"EMPTY": ""})
    assert line.startswith(f"{field}: is empty: set a value")


def test_deadlines_that_contradict_each_other_are_refused() -> None:
    """A webhook that gives up before its events would be spooled refuses every POST of an outage."""
    webhook = (
        "sources:\n  - kind: o2g\n    name: p\n    url: https://o\n    username: u\n    password: pw\n"
        "    delivery: webhook\n    webhook_public_url: https://me/webhooks/o2g/p\n    webhook_deadline: 2s\n"
    )
    [line] = problems(webhook)
    assert "webhook_deadline (2s) must be longer than kafka.spool_after (2s)" in line
    parse_config(webhook + "kafka:\n  spool_after: 500ms\n", {})


def test_every_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    """A missing secret no longer hides the structural problems behind it."""
    config = tmp_path / "streamd.yaml"
    config.write_text(
        "kafka:\n  bootstrap_servers: 'broker-1, broker-2:notaport'\n  topic_prefx: x\n"
        "http:\n  listen: '0.0.0.0:99999'\n  auth_token: ${file:/nonexistent/token}\n"
        "shutdown_grace: -5s\n"
        "sources:\n  - {kind: xima, name: 'bad name', url: 'https://x', api_key: '${env:XIMA_KEY}'}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(config, env={})
    lines = info.value.problems
    assert all(line.startswith(f"{config}: ") for line in lines)
    text = "\n".join(lines)
    assert "http.auth_token: cannot read file /nonexistent/token" in text
    assert "sources[0].api_key: environment variable XIMA_KEY is not set (line 9)" in text
    assert "kafka.bootstrap_servers: expected host:port, got 'broker-1'" in text
    assert "kafka.topic_prefx: unknown key: did you mean `topic_prefix`? (line 3)" in text
    assert "http.listen: port 99999 is out of range (0-65535)" in text
    assert "shutdown_grace: a duration cannot be negative (line 7)" in text
    assert "sources[0].name: expected a name of letters, digits" in text
    assert "pattern" not in text
    assert "^" not in text
    assert "Secret" not in text
    assert len(lines) == 7


def test_no_env_checks_substitutions_for_syntax_only(tmp_path: Path) -> None:
    config = tmp_path / "streamd.yaml"
    config.write_text(
        "http: {auth_token: '${env:TOKEN}'}\n"
        "sources:\n  - {kind: xima, name: c, url: 'https://x', api_key: '${file:/run/secrets/key}'}\n"
    )
    assert load_config(config, env={}, no_env=True).http.auth_token is not None
    config.write_text("http: {auth_token: '${vault:TOKEN}'}\n")
    with pytest.raises(ConfigError, match="unrecognised substitution"):
        load_config(config, env={}, no_env=True)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("[::]:8080", "::", 8080), (":0", "0.0.0.0", 0), ("127.0.0.1:80", "127.0.0.1", 80)],
)
def test_listen_accepts_ipv6(listen: str, host: str, port: int) -> None:
    http = parse_config(f"http: {{listen: '{listen}'}}\n", {}).http
    assert (http.host, http.port) == (host, port)


@pytest.mark.parametrize("value", ["-5", "-5s", "'-500ms'"])
def test_negative_durations_get_one_message(value: str) -> None:
    assert problems(f"shutdown_grace: {value}\n") == [
        "shutdown_grace: a duration cannot be negative (line 1)"
    ]
