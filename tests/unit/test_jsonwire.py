"""Vendor JSON keeps integers beyond 64 bits exact (as strings), on every path that decodes it."""

from __future__ import annotations

import orjson
import pytest

from streamd.jsonwire import loads
from streamd.publish.encoding import encode
from streamd.sources.o2g.normalize import normalize
from streamd.sources.o2g.protocol import O2GEventDecoder

BIG = "123456789012345678901234567890"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (f'{{"a": {BIG}}}', {"a": BIG}),
        (f'{{"a": -{BIG}, "b": [1, {BIG}]}}', {"a": f"-{BIG}", "b": [1, BIG]}),
        ('{"a": 18446744073709551615, "b": -9223372036854775808}', {"a": 2**64 - 1, "b": -(2**63)}),
        (f'{{"a": "{BIG}", "b": 1.5}}', {"a": BIG, "b": 1.5}),  # digits in a string stay a string
        ('{"a": 12345678901234567890.5}', {"a": 12345678901234567890.5}),  # a float stays a float
    ],
)
def test_loads_keeps_big_integers_exact(raw: str, expected: object) -> None:
    assert loads(raw.encode()) == expected


def test_invalid_json_still_raises() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        loads(b"{1: 2}")


def test_the_chunk_decoder_keeps_a_big_integer_split_across_chunks() -> None:
    line = f'{{"eventName": "OnPilotCallQueued", "pilot": "1", "callRef": "2", "caller": "3", "cause": "CAMP_ON", "numberOfQueued": {BIG}}}\n'
    cut = line.index(BIG) + 10
    decoder = O2GEventDecoder(65536)
    items = decoder.feed(line[:cut].encode()) + decoder.feed(line[cut:].encode())
    assert items[0]["numberOfQueued"] == BIG  # type: ignore[index]
    vendor = normalize("p", items[0])[0]  # type: ignore[arg-type]
    assert vendor.deviations == ("$.numberOfQueued",)  # the guide says integer
    assert orjson.loads(encode(vendor, "").value)["numberOfQueued"] == BIG
