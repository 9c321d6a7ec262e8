"""Generated schemas: every event type's (``streamd schema --events``), the configuration's
(``streamd schema``: every example in config/ validates) and the committed generated files
(``python -m streamd.schemas --check``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from streamd.cli import main
from streamd.config import Config
from streamd.config_types import parse_duration
from streamd.events import AgentState, DeadLetter, QueueMetric, State
from streamd.publish.encoding import encode
from streamd.schemas import config_schema, event_models, event_schema, events_schema, generated_files
from streamd.schemas import main as schemas_main

WHEN = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def document() -> dict[str, object]:
    return events_schema()


def test_every_vendor_and_canonical_type_is_listed(document: dict[str, object]) -> None:
    types = set(event_models())
    assert {"streamd.agent.State", "streamd.queue.Metric", "streamd.deadletter"} <= types
    for vendor in ("o2g.", "xima.", "alvaria.", "calabrio."):
        assert any(t.startswith(vendor) for t in types), vendor
    assert set(document["events"]) == types  # type: ignore[call-overload]


def test_every_schema_is_valid_json_schema(document: dict[str, object]) -> None:
    events: dict[str, object] = document["events"]  # type: ignore[assignment]
    shared: dict[str, object] = document["$defs"]  # type: ignore[assignment]
    # One metaschema check over everything (per-type checks would re-check the shared $defs).
    Draft202012Validator.check_schema({"$defs": {**shared, **{f"event:{k}": v for k, v in events.items()}}})


@pytest.mark.parametrize(
    "event",
    [
        AgentState(
            vendor="o2g", source="p", agent_id="1", state=State.NOT_READY, since=WHEN, queue_ids=("q",)
        ).to_event(),
        QueueMetric(
            vendor="xima", source="c", queue_id="q", metric="waiting", value=4, unit="calls"
        ).to_event(),
        DeadLetter.of(
            source="p", stage="decode", error_type="malformed_json", error="x", raw=b"\xff"
        ).to_event(),
    ],
)
def test_canonical_values_validate(document: dict[str, object], event: object) -> None:
    from streamd.events import Event

    assert isinstance(event, Event)
    ce_type = "streamd.deadletter" if event.type.startswith("streamd.deadletter") else event.type
    value = orjson.loads(encode(event, "").value)
    Draft202012Validator(event_schema(document, ce_type)).validate(value)


def test_bad_value_fails_validation(document: dict[str, object]) -> None:
    validator = Draft202012Validator(event_schema(document, "streamd.agent.State"))
    assert not validator.is_valid({"vendor": "o2g", "source": "p", "agent_id": "1", "state": "sleeping"})


def test_a_deviating_vendor_record_is_described_as_such(document: dict[str, object]) -> None:
    from streamd.sources.o2g.normalize import normalize

    ce_type = "o2g.telephony.OnCallCreated"
    schema = event_schema(document, ce_type)
    documented = {**schema["anyOf"][0], "$defs": document["$defs"]}  # type: ignore[dict-item]
    event = {
        "eventName": "OnCallCreated",
        "loginName": "u",
        "callRef": "1",
        "participants": [{"participantId": "2"}],
    }
    deviating = {**event, "participants": [{"participantId": "2", "identity": {"displayName": "Anonymous"}}]}
    assert normalize("p", deviating)[0].deviations == ("$.participants[0].identity.id",)
    assert Draft202012Validator(documented).is_valid(event)
    assert not Draft202012Validator(documented).is_valid(deviating)
    value = orjson.loads(encode(normalize("p", deviating)[0], "").value)
    Draft202012Validator(schema).validate(value)  # what consumers receive is described


def test_cli_prints_events_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--events"]) == 0
    assert "streamd.agent.State" in orjson.loads(capsys.readouterr().out)["events"]


# --- the configuration schema (``streamd schema``) -----------------------------------------------

CONFIG_EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "config").glob("*.yaml"))


@pytest.fixture(scope="module")
def config_validator() -> Draft202012Validator:
    schema = config_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_config_examples_exist() -> None:
    assert len(CONFIG_EXAMPLES) >= 5


@pytest.mark.parametrize("path", CONFIG_EXAMPLES, ids=lambda p: p.name)
def test_every_config_example_validates_against_the_generated_schema(
    config_validator: Draft202012Validator, path: Path
) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in config_validator.iter_errors(document)
    ]
    assert not problems, problems


@pytest.mark.parametrize(
    ("value", "valid"),
    [(5, True), (0.5, True), ("500ms", True), ("5s", True), (" 15m ", True), ("1.5h", True), ("2d", True),
     (-1, False), ("5 minutes", False), ("-5s", False), (True, False), (None, False)],
)  # fmt: skip
def test_durations_accept_numbers_and_unit_strings_like_the_parser(
    config_validator: Draft202012Validator, value: object, valid: bool
) -> None:
    document = {"kafka": {"linger": value}}
    assert config_validator.is_valid(document) is valid
    try:
        parse_duration(value)
    except ValueError:
        parsed = False
    else:
        parsed = True
    assert parsed is valid


def test_a_duration_keeps_its_field_bounds() -> None:
    """``flush_interval: Duration = Field(gt=0)``: the number branch says so too."""
    sink = config_schema()["$defs"]["CalabrioRtdcSinkConfig"]["properties"]["flush_interval"]
    number, text = sink["anyOf"]
    assert number == {"type": "number", "exclusiveMinimum": 0}
    assert text["type"] == "string"


def test_the_serialized_config_schema_says_seconds() -> None:
    kafka = Config.model_json_schema(mode="serialization")["$defs"]["KafkaConfig"]["properties"]
    assert kafka["linger"]["type"] == "number"


# --- committed generated files ---------------------------------------------------------------------


@pytest.mark.parametrize("path", list(generated_files()), ids=lambda p: p.name)
def test_committed_generated_files_are_current(path: Path) -> None:
    produce = generated_files()[path]
    assert path.read_text(encoding="utf-8") == produce(), (
        f"{path.name} is stale: run python -m streamd.schemas --write"
    )


def test_check_command_reports_a_stale_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schemas_main(["--check"]) == 0
    stale = tmp_path / "openapi.json"
    stale.write_text("{}\n")
    monkeypatch.setattr("streamd.schemas.generated_files", lambda: {stale: lambda: "[]\n"})
    monkeypatch.setattr("streamd.schemas.ROOT", tmp_path)
    assert schemas_main(["--check"]) == 1
    assert "openapi.json is stale" in capsys.readouterr().err
    assert schemas_main(["--write"]) == 0
    assert stale.read_text() == "[]\n"
