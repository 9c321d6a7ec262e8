"""The decoder's NDJSON fast path (wire.py rule 3): whole lines of one chunk split at once, and
the scanner taking over, from the first line that is not one object, with nothing lost or reordered."""

from __future__ import annotations

import pytest

from streamd.errors import VendorProtocolError
from streamd.sources.o2g import wire
from streamd.sources.o2g.protocol import MalformedEvent, O2GEventDecoder


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


def test_after_a_line_split_across_reads_the_whole_lines_take_the_fast_path_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow: list[bytes] = []  # lines decoded one by one by the scanner's side (rule 3's slow path)
    original = wire._loads_dict

    def counted(raw: bytes | bytearray, exact: bool) -> dict[str, object] | None:
        slow.append(bytes(raw))
        return original(raw, exact)

    monkeypatch.setattr(wire, "_loads_dict", counted)
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


def test_an_oversize_line_raises_on_the_fast_path_too() -> None:
    with pytest.raises(VendorProtocolError, match="exceeds 16"):
        O2GEventDecoder(16).feed(b'{"n":1}\n{"long":"aaaaaaaaaaaaaaaa"}\n')
