"""What an operator meets on day one, through the real ``streamd`` entry point (issue 22):
``check-config --no-env``, counts in words, ``run`` never on the embedded broker by default,
``--version``, help for every option, ``demo --host``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import streamd
from streamd import cli

SOURCE = (
    "  - {kind: o2g, name: pbx, url: 'https://pbx.example:8443', username: '${env:PBX_USER}',"
    " password: '${file:/run/secrets/does-not-exist}'}\n"
)


def test_check_config_no_env_checks_substitutions_for_syntax_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PBX_USER", raising=False)
    path = tmp_path / "streamd.yaml"
    path.write_text("kafka: {bootstrap_servers: 'kafka:9092'}\nsources:\n" + SOURCE)
    assert cli.main(["check-config", "-c", str(path)]) == 2  # without the flag: both are missing
    err = capsys.readouterr().err
    assert "environment variable PBX_USER is not set" in err
    assert "cannot read file /run/secrets/does-not-exist" in err

    assert cli.main(["check-config", "--no-env", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: ok (1 source, 0 sinks")  # one source: no "1 sources"

    path.write_text(path.read_text() + "  - {kind: o2g, name: pbx2}\n")  # no url
    assert cli.main(["check-config", "--no-env", "-c", str(path)]) == 2  # structure still checked
    assert "sources[1].url" in capsys.readouterr().err


def test_run_and_check_config_require_bootstrap_servers_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import streamd.app

    started: list[object] = []

    async def daemon(config: object) -> None:
        started.append(config)

    monkeypatch.setattr(streamd.app, "run_daemon", daemon)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    for command in ("run", "check-config"):
        assert cli.main([command, "-c", str(empty)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{empty}: kafka.bootstrap_servers: required"), err
        assert err.count("\n") == 1
    no_servers = tmp_path / "no-servers.yaml"
    no_servers.write_text("kafka: {topic_prefix: 'x.'}\n")
    assert cli.main(["run", "-c", str(no_servers)]) == 2
    assert "kafka.bootstrap_servers: required" in capsys.readouterr().err
    assert started == []  # never on the embedded test broker by default

    explicit = tmp_path / "embedded.yaml"
    explicit.write_text("kafka: {bootstrap_servers: embedded}\n")  # asked for by name: allowed
    assert cli.main(["run", "-c", str(explicit)]) == 0
    assert len(started) == 1


def test_demo_keeps_the_embedded_broker_and_listens_on_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import streamd.demo
    from streamd.config import Config

    configs: list[Config] = []

    async def daemon(config: Config, **_: object) -> None:
        configs.append(config)

    monkeypatch.setattr(streamd.demo, "demo_simulators", list)  # the daemon's config is the point
    monkeypatch.setattr(streamd.demo, "run_daemon", daemon)
    assert cli.main(["demo", "--host", "0.0.0.0", "--port", "0", "--duration", "0"]) == 0
    assert [(c.kafka.embedded, c.http.host) for c in configs] == [(True, "0.0.0.0")]
    assert cli.main(["demo", "--port", "0", "--duration", "0"]) == 0
    assert configs[1].http.host == "127.0.0.1"  # loopback unless asked


def test_version_through_the_console_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamd", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"streamd {streamd.__version__}"


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


@pytest.mark.parametrize("command", [[], ["run"], ["check-config"], ["schema"], ["demo"], ["tail"]])
def test_every_option_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = cli._parser()
    if command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[command[0]]
    undocumented = [
        a.dest for a in parser._actions if a.help is None and not isinstance(a, argparse._SubParsersAction)
    ]
    assert undocumented == []
    _help(command, capsys)  # and it prints


def test_help_states_defaults_choices_and_the_topic_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    assert "(default: /etc/streamd/config.yaml)" in _help(["run"], capsys)
    top = _help([], capsys)
    assert "--version" in top
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL (default: INFO)" in top
    assert "kafka.topic_prefix is added" in _help(["tail"], capsys)
    demo = _help(["demo"], capsys)
    assert "--host" in demo
    assert "0.0.0.0" in demo
    assert "--no-env" in _help(["check-config"], capsys)


def test_log_level_is_checked_and_case_insensitive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--log-level", "LOUD", "schema"])
    assert exit_.value.code == 2
    assert "invalid choice: 'LOUD'" in capsys.readouterr().err
    assert cli.main(["--log-level", "debug", "schema"]) == 0


def test_a_url_with_a_space_is_refused_in_every_url_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "streamd.yaml"
    path.write_text(
        "kafka: {bootstrap_servers: 'kafka:9092'}\nsources:\n"
        "  - {kind: o2g, name: pbx, url: 'https://pbx example:8443', username: a, password: b}\n"
        "  - {kind: xima, name: cr, url: 'https://x example', api_key: k}\n"
        "  - {kind: calabrio, name: wfm, url: 'https://c example', username: a, password: b}\n"
        "  - {kind: alvaria, name: via, base_url: 'https://a example', token_url: 'https://t example',"
        " client_id: c, client_secret: s, api_key: k}\n"
    )
    assert cli.main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    for field in ("sources[0].url", "sources[1].url", "sources[2].url", "sources[3].base_url"):
        assert f"{path}: {field}: a URL cannot contain spaces" in err, err
    assert f"{path}: sources[3].token_url: a URL cannot contain spaces" in err


def test_an_unknown_key_is_matched_against_the_keys_of_its_own_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "streamd.yaml"
    path.write_text(  # o2g has no `interval` (xima has): never "did you mean `interval`?" for it
        "kafka: {bootstrap_servers: 'kafka:9092'}\nsources:\n"
        "  - {kind: o2g, name: pbx, url: 'https://pbx:8443', username: a, password: b, interval: 5s}\n"
        "  - {kind: xima, name: cr, url: 'https://cr', api_key: k, intreval: 5s}\n"
    )
    assert cli.main(["check-config", "-c", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    o2g = next(line for line in lines if "sources[0].interval" in line)
    assert "unknown key" in o2g
    assert "`interval`" not in o2g
    assert any("sources[1].intreval: unknown key: did you mean `interval`?" in line for line in lines)


def test_check_config_warns_loudly_about_acks_other_than_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "streamd.yaml"
    for acks in ("1", "0"):
        path.write_text(f"kafka: {{bootstrap_servers: 'kafka:9092', acks: '{acks}'}}\n")
        assert cli.main(["check-config", "-c", str(path)]) == 0  # allowed, but said out loud
        err = capsys.readouterr().err
        assert err.startswith(f"{path}: warning: kafka.acks is {acks}, not all"), err
    path.write_text("kafka: {bootstrap_servers: 'kafka:9092'}\n")
    assert cli.main(["check-config", "-c", str(path)]) == 0
    assert capsys.readouterr().err == ""
