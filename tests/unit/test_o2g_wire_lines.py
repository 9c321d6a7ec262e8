"""The decoder's NDJSON fast path (wire.py rule 3): whole lines of one chunk split at once, and
the scanner taking over, from the first line that is not one object, with nothing lost or reordered."""

from __future__ import annotations

import pytest

from streamd.errors import VendorProtocolError
from streamd.sources.o2g import wire
from streamd.sources.o2g.protocol import MalformedEvent, O2GEventDecoder, StreamLimitError


def test_a_chunk_mixing_ndjson_with_other_framing_decodes_everything_in_order() -> None:
    chunk = (
        b'{"n":1}\n{"n":2}\r\n\n'  # NDJSON, a CRLF line, a blank line
        b'{"n":3}{"n":4}\n'  # two objects on one line: the scanner's
        b'{"n":5}\n'
        b'{"n":\n6}\n'  # an object across lines
        b'{"n":7, oops}\n'  # malformed
        b'junk\n{"n":8}\n'  # stray bytes
        b'{"n":9}'  # no newline yet
    )
    out = O2GEventDecoder().feed(chunk)
    decoded = [x if isinstance(x, dict) else ("malformed", x.raw) for x in out]
    assert decoded == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
        {"n": 4},
        {"n": 5},
        {"n": 6},
        ("malformed", b'{"n":7, oops}'),
        ("malformed", b"junk"),
        {"n": 8},
        {"n": 9},
    ]
    assert all(isinstance(x, dict | MalformedEvent) for x in out)


def test_lines_split_across_chunks_come_out_once() -> None:
    decoder = O2GEventDecoder()
    assert decoder.feed(b'{"n":1}\n{"n":') == [{"n": 1}]
    assert decoder.feed(b'2}\n{"n":3}\n') == [{"n": 2}, {"n": 3}]
    decoder.feed_eof()


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The lines decoded one by one by the scanner's side (rule 3's slow path)."""
    lines: list[bytes] = []
    original = wire._loads_dict

    def counted(raw: bytes | bytearray, exact: bool) -> dict[str, object] | None:
        lines.append(bytes(raw))
        return original(raw, exact)

    monkeypatch.setattr(wire, "_loads_dict", counted)
    return lines


def test_after_a_line_split_across_reads_the_whole_lines_take_the_fast_path_again(slow: list[bytes]) -> None:
    decoder = O2GEventDecoder()
    lines = [b'{"n":%d,"s":"%s"}' % (n, b"x" * n) for n in range(40)]
    stream = b"\n".join(lines) + b"\n"
    out: list[object] = []
    for at in range(0, len(stream), 97):  # reads that end inside lines, as sockets deliver them
        out += decoder.feed(stream[at : at + 97])
    decoder.feed_eof()
    assert out == [{"n": n, "s": "x" * n} for n in range(40)]
    assert slow == []  # every cut line was completed by the scanner, every whole line split at once


def test_an_integer_beyond_64_bits_in_a_fast_line_is_kept_exact() -> None:
    out = O2GEventDecoder().feed(b'{"n":1}\n{"big":123456789012345678901234567890}\n')
    assert out == [{"n": 1}, {"big": "123456789012345678901234567890"}]


def test_an_oversize_line_is_a_malformed_event_on_the_fast_path_too() -> None:
    out = O2GEventDecoder(16).feed(b'{"n":1}\n{"long":"aaaaaaaaaaaaaaaa"}\n{"n":2}\n')
    assert out[0] == {"n": 1}
    assert out[2] == {"n": 2}  # the stream goes on after it (wire rule 4)
    assert isinstance(out[1], MalformedEvent)
    assert (out[1].error_type, out[1].raw) == ("oversize_event", b'{"long":"aaaaaaaaaaaaaaaa"}')
    assert "of 27 bytes exceeds max_event_size (16)" in out[1].error


def test_a_read_full_of_malformed_lines_takes_the_fast_path_once_not_once_a_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    original = O2GEventDecoder._lines

    def counted(self: O2GEventDecoder, out: list[dict[str, object] | MalformedEvent]) -> None:
        calls.append(len(out))
        original(self, out)

    monkeypatch.setattr(O2GEventDecoder, "_lines", counted)
    decoder = O2GEventDecoder()
    assert decoder.feed(b'{"n":0}\n{"cut":') == [{"n": 0}]
    calls.clear()
    out = decoder.feed(b"1}\n" + b'{"bad":x}\n{"n":1}\n' * 500)  # the cut line, then 1,000 lines
    assert len(out) == 1001
    assert out[0] == {"cut": 1}
    assert [x.raw for x in out[1::2] if isinstance(x, MalformedEvent)] == [b'{"bad":x}'] * 500
    assert out[2::2] == [{"n": 1}] * 500
    assert len(calls) <= 2  # not once per malformed line: each call splits the rest of the read


def test_crlf_lines_cut_by_reads_take_the_fast_path_again(slow: list[bytes]) -> None:
    decoder = O2GEventDecoder()
    stream = b"".join(b'{"n":%d}\r\n' % n for n in range(60))
    out: list[object] = []
    for at in range(0, len(stream), 50):
        out += decoder.feed(stream[at : at + 50])
    assert out == [{"n": n} for n in range(60)]
    assert slow == []


@pytest.mark.parametrize("split", [1, 20, 40, 60])
def test_an_integer_beyond_64_bits_stays_exact_wherever_the_reads_split(split: int) -> None:
    line = b'{"big":123456789012345678901234567890,"pad":"xxxxxxxxxxxxxxxxxxxxxxxx"}\n'
    decoder = O2GEventDecoder()
    out = decoder.feed(line[:split]) + decoder.feed(line[split:])
    assert out == [{"big": "123456789012345678901234567890", "pad": "x" * 24}]


@pytest.mark.parametrize(
    "pieces",
    [
        [b'{"n":1}\n{"long":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}\n'],
        [
            b'{"n":1}\n{"long":"aaaaaaaaaaaaaaaaaaaaa',
            b'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}\n',
        ],  # scanned
        [
            b'{"n":1}{"long":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}'
        ],  # back to back
        [
            b'{"n":1}{"long":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}\r\n'
        ],  # back to back, then a line's end: the newline path between objects (CR not kept)
    ],
)
def test_the_event_size_limit_holds_on_every_path(pieces: list[bytes]) -> None:
    decoder = O2GEventDecoder(50)
    out = [item for piece in pieces for item in decoder.feed(piece)]
    out += decoder.feed(b'{"n":2}\n')
    assert [type(i).__name__ for i in out] == ["dict", "MalformedEvent", "dict"]
    assert (out[0], out[2]) == ({"n": 1}, {"n": 2})
    oversize = out[1]
    assert isinstance(oversize, MalformedEvent)
    assert oversize.error_type == "oversize_event"
    whole = b"".join(pieces)
    start = whole.index(b'{"long"')
    expected = whole[start : whole.index(b"}", start) + 1]
    assert oversize.raw == expected
    assert f"of {len(expected)} bytes exceeds max_event_size (50)" in oversize.error


def test_an_event_still_incomplete_beyond_the_limit_raises_with_what_came_before_it() -> None:
    """Wire rule 4: no way to resync; the objects the same read completed are on the error."""
    decoder = O2GEventDecoder(50)
    with pytest.raises(StreamLimitError, match="exceeds 50 bytes \\(still incomplete\\)") as raised:
        decoder.feed(b'{"n":1}\n{"pretty":\n  {"n":2}}\n{"long":"' + b"a" * 60)
    assert raised.value.decoded == [{"n": 1}, {"pretty": {"n": 2}}]
    assert raised.value.raw == b'{"long":"' + b"a" * 60  # for its dead letter
    assert isinstance(raised.value, VendorProtocolError)
    with pytest.raises(StreamLimitError, match="stray bytes") as stray:
        O2GEventDecoder(16).feed(b'{"n":1}\n' + b"z" * 40)
    assert stray.value.decoded == [{"n": 1}]


def test_a_kept_oversize_event_is_cut_to_its_first_kept_bytes() -> None:
    big = b'{"long":"' + b"a" * (wire.KEPT_BYTES * 2) + b'"}\r\n'
    (item,) = O2GEventDecoder(1000).feed(big)
    assert isinstance(item, MalformedEvent)
    assert item.raw == big[: wire.KEPT_BYTES]
    assert f"its first {wire.KEPT_BYTES} bytes kept" in item.error


def test_a_kept_oversize_event_is_never_cut_inside_a_character() -> None:
    """Cut inside "é", the kept bytes would not be text, and its dead letter would be base64."""
    big = '{"t":"' + "é" * wire.KEPT_BYTES + '"}\n'
    (item,) = O2GEventDecoder(1000).feed(big.encode())
    assert isinstance(item, MalformedEvent)
    text = item.raw.decode()  # valid UTF-8
    assert big.startswith(text)
    assert wire.KEPT_BYTES - 1 <= len(item.raw) <= wire.KEPT_BYTES
    with pytest.raises(StreamLimitError) as raised:
        O2GEventDecoder(1000).feed(big.encode()[: wire.KEPT_BYTES * 2 - 1])  # still incomplete
    assert big.startswith(raised.value.raw.decode())


def test_one_big_integer_does_not_send_the_reads_after_it_the_exact_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exact: list[bytes] = []
    original = wire.loads

    def counted(raw: bytes | bytearray | memoryview | str, *, check: bool = True) -> object:
        if check:
            exact.append(bytes(raw) if not isinstance(raw, str) else raw.encode())
        return original(raw, check=check)

    monkeypatch.setattr(wire, "loads", counted)
    lines = [
        b'{"n":%d,"p":"%s"}\n' % (n, b"x" * (n % 7)) for n in range(200)
    ]  # reads rarely end at a line's end
    stream = b'{"big":123456789012345678901234567890}\n' + b"".join(lines)
    decoder = O2GEventDecoder()
    out: list[object] = []
    for at in range(0, len(stream), 37):  # every read ends inside an event
        out += decoder.feed(stream[at : at + 37])
    assert out == [
        {"big": "123456789012345678901234567890"},
        *({"n": n, "p": "x" * (n % 7)} for n in range(200)),
    ]
    assert len(exact) <= 8  # the two reads holding the big one, not the 50 reads after them
