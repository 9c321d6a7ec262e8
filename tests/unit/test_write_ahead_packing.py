"""The write-ahead's packed batches: one row per batch, records packed and read back exactly, what a
crash leaves recovered into the spool in order and exactly once, and a database of an older
version (one row per record) recovered after an upgrade."""

from __future__ import annotations

import random
import sqlite3
import zlib
from pathlib import Path

import anyio
import cramjam
import orjson
import pytest

from streamd.errors import FatalError, PublishError
from streamd.events import Event
from streamd.publish import spool as spool_module
from streamd.publish.encoding import Record, encode
from streamd.publish.spool import Spool, pack, unpack
from streamd.publish.units import Batch
from streamd.publish.write_ahead import WriteAhead, _ranges


def _events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(topic="t", type="x.t.E", source="s", key=f"s:{i % 3}", data={"i": i})
        for i in range(start, start + n)
    ]


RECORDS = [encode(e, "p.") for e in _events(20)]
"""Realistic records (CloudEvents headers), encoded once: each has its own id and time."""


def _records(n: int, start: int = 0) -> list[Record]:
    return RECORDS[start : start + n]


def _numbers(records: list[Record]) -> list[int]:
    return [orjson.loads(r.value)["i"] for r in records]


def _spooled(spool: Spool) -> list[Record]:
    return [r for _, r in spool.peek(10_000)]


def _rows(path: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(path) as db:
        return [
            (int(seq), int(n)) for seq, n in db.execute("SELECT seq, records FROM written_ahead ORDER BY seq")
        ]


ODD = [
    Record("", b"", b"", ()),  # nothing at all
    Record("t", b"", b"{}", (("ce_id", b""), ("", b""), ("ce_type", b"x"))),  # empty key, names, values
    Record("tøpic.ünï.日本", "kéy".encode(), b"\x00\xff\x00binary", (("naïve-名", "välue-値".encode()),)),
    Record("big", b"k", b"v" * 100_000, (("h", "€".encode()),)),
    Record("t", b"k", b"v", ()),
]


def test_pack_round_trips_odd_and_realistic_records() -> None:
    records = ODD + _records(50) + ODD
    assert unpack(pack(records)) == records
    assert unpack(pack([])) == []
    assert unpack(pack(ODD[:1])) == ODD[:1]
    assert all(isinstance(h, tuple) for r in unpack(pack(records)) for h in [r.headers])  # encoding rule 8
    assert all(isinstance(pair, tuple) for r in unpack(pack(records)) for pair in r.headers)
    assert pack([]).startswith(b"swa3")
    assert unpack(pack(records, compress=False)) == records  # an older version's layout
    assert pack([], compress=False).startswith(b"swa2")


@pytest.mark.parametrize(
    "record",
    [
        Record("surrogate-\udc80", b"k", b"v", []),
        Record("t", b"k", b"v", [("h\udcff", b"x")]),
        Record("t", b"k", b"v", [("a", b"\xff\xfe")]),
        Record("t", b"k", b"v", [("a", "€".encode()[:2]), ("b", "€".encode()[2:])]),  # split: each checked
    ],
)
def test_records_the_spool_could_not_hold_are_refused_when_written_ahead(
    tmp_path: Path, record: Record
) -> None:
    with pytest.raises(ValueError, match=r"not valid Unicode|not UTF-8"):
        pack([record])
    spool = Spool(tmp_path / "s.db")
    with pytest.raises(PublishError, match="cannot be written ahead"):
        spool.write_ahead([_records(2), [record]])
    assert _rows(tmp_path / "s.db") == []
    assert spool.write_ahead([_records(1)]) == 1  # nothing half-written, the next write works
    spool.close()


def test_unpack_refuses_anything_truncated_extended_or_inconsistent_with_a_clear_error() -> None:
    records = ODD[1:3] + _records(3)
    packed = pack(records, compress=False)  # the layout inside the compressed frame
    for end in range(len(packed)):  # every truncation, never an IndexError or a short read
        with pytest.raises(ValueError, match=r"not a packed batch|truncated"):
            unpack(packed[:end])
    with pytest.raises(ValueError, match="trailing characters"):
        unpack(packed + b"x")
    with pytest.raises(ValueError, match="not a packed batch"):
        unpack(b"SQLite format 3\x00" + packed)
    with pytest.raises(ValueError, match=r"not a packed batch \(starts with b'swa1'"):
        unpack(b"swa1" + packed[4:])  # another format is told apart by its magic

    # The layout (pack's docstring): magic, the array of records, ODD[1] first:
    # [topic "t", key b"", value b"{}", 3 header pairs ...].
    assert packed[:15] == b"swa2\x95\x94\xa1t\xc4\x00\xc4\x02{}\x93"

    def damaged(at: int, byte: int) -> bytes:
        return packed[:at] + bytes([byte]) + packed[at + 1 :]

    with pytest.raises(ValueError, match="truncated"):
        unpack(damaged(4, 0x96))  # one record more than there is
    with pytest.raises(ValueError, match="trailing characters"):
        unpack(damaged(4, 0x94))  # one record less: the last one is left over
    with pytest.raises(ValueError, match=r"Expected `array` of length 4, got 3 - at `\$\[0\]`"):
        unpack(damaged(5, 0x93))  # a record without its headers
    with pytest.raises(ValueError, match=r"Expected `array` of length 2, got 4 - at `\$\[0\]\[3\]\[3\]`"):
        unpack(damaged(14, 0x94))  # one header pair more: the next record is read as one
    with pytest.raises(ValueError, match=r"Expected `array` of length 4, got 2 - at `\$\[1\]`"):
        unpack(damaged(14, 0x92))  # one header pair less: it is read as the next record
    short = pack([Record("t", b"k", b"v", [])], compress=False)
    assert short == b"swa2\x91\x94\xa1t\xc4\x01k\xc4\x01v\x90"
    with pytest.raises(ValueError, match="truncated"):
        unpack(short[:9] + b"\x20" + short[10:])  # a key longer than what is left
    with pytest.raises(ValueError, match=r"Expected `str`, got `bytes` - at `\$\[0\]\[0\]`"):
        unpack(damaged(6, 0xC4))  # a binary where the topic is
    with pytest.raises(ValueError, match="a topic or header name is not UTF-8"):
        unpack(damaged(7, 0xFF))
    value = packed.index(b"\xa7ce_type\xc4\x01x") + 10
    assert packed[value] == ord("x")
    with pytest.raises(ValueError, match="a header value is not UTF-8"):
        unpack(damaged(value, 0xFF))  # pack refuses it, so does unpack: recovery could not move it
    assert unpack(packed) == records


def test_a_compressed_batch_is_magic_checksum_length_and_a_zstd_frame() -> None:
    records = _records(20)
    packed, plain = pack(records), pack(records, compress=False)
    assert packed[:4] == b"swa3"
    assert packed[4:8] == zlib.crc32(packed[8:]).to_bytes(4, "big")  # of everything after it
    assert int.from_bytes(packed[8:12], "big") == len(plain) - 4  # the body's length
    assert bytes(cramjam.zstd.decompress(packed[12:])) == plain[4:]  # the body: swa2's, compressed
    assert len(packed) * 3 < len(plain)  # CloudEvents headers repeat from record to record
    assert unpack(packed) == unpack(plain) == records


def test_a_compressed_batch_refuses_truncation_extension_and_damage_by_its_checksum() -> None:
    records = _records(20)
    packed = pack(records)
    for end in range(len(packed)):
        with pytest.raises(
            ValueError, match=r"not a packed batch|truncated before its frame|checksum mismatch"
        ):
            unpack(packed[:end])
    with pytest.raises(ValueError, match=r"^a damaged packed batch \(11 bytes\): truncated before its frame"):
        unpack(packed[:11])
    with pytest.raises(ValueError, match="checksum mismatch"):
        unpack(packed + b"x")
    with pytest.raises(ValueError, match="checksum mismatch"):
        unpack(packed + packed[4:])
    with pytest.raises(ValueError, match="checksum mismatch"):
        unpack(b"swa3" + pack(records, compress=False)[4:])  # the plain layout under the compressed magic
    for bit in range(32, 8 * len(packed)):  # CRC-32 catches every single-bit flip after the magic
        flipped = bytearray(packed)
        flipped[bit // 8] ^= 1 << bit % 8
        with pytest.raises(ValueError, match=r"^a damaged packed batch \(\d+ bytes\): checksum mismatch"):
            unpack(bytes(flipped))
    assert unpack(packed) == records


def _forged(size: int, frame: bytes) -> bytes:
    """A compressed blob of pack's layout with a right checksum around any length and frame."""
    tail = size.to_bytes(4, "big") + frame
    return b"swa3" + zlib.crc32(tail).to_bytes(4, "big") + tail


def test_a_blob_with_a_right_checksum_but_a_wrong_length_or_frame_is_refused() -> None:
    records = _records(5)
    body = pack(records, compress=False)[4:]
    frame = bytes(cramjam.zstd.compress(body, 1))
    assert _forged(len(body), frame) == pack(records)
    assert unpack(_forged(len(body), frame)) == records
    with pytest.raises(ValueError, match=r"holds more than the \d+ bytes it says"):
        unpack(_forged(len(body) - 1, frame))
    with pytest.raises(ValueError, match=rf"holds {len(body)} bytes, not the {len(body) + 1} it says"):
        unpack(_forged(len(body) + 1, frame))
    for size in (0xFFFF_FFFF, (1 << 30) + 1):  # refused before anything is allocated
        with pytest.raises(ValueError, match=rf"says it holds {size} bytes, more than a packed batch can"):
            unpack(_forged(size, frame))
    with pytest.raises(ValueError, match="compressed frame is damaged"):
        unpack(_forged(len(body), b"\x00" + frame[1:]))  # zstd's magic number
    with pytest.raises(ValueError, match="compressed frame is damaged"):
        unpack(_forged(len(body), frame[:-1]))
    with pytest.raises(ValueError, match="trailing characters"):
        unpack(_forged(2 * len(body), frame + frame))  # two frames: the second array is left over
    with pytest.raises(ValueError, match=r"\$\[0\]"):
        unpack(_forged(len(body), bytes(cramjam.zstd.compress(b"\x91\x93" + body[2:], 1))))


def test_a_frame_that_expands_past_its_length_is_refused_without_decompressing_it_all() -> None:
    """A 10 KB zstd frame of 256 MiB of zeros (built in 1 MiB steps): decompressed into the
    length the blob says, it runs out of room at once."""
    compressor = cramjam.zstd.Compressor(1)
    zeros = bytes(1 << 20)
    for _ in range(256):
        compressor.compress(zeros)
    bomb = bytes(compressor.finish())
    assert len(bomb) < 64 << 10
    with pytest.raises(ValueError, match=r"holds more than the 100 bytes it says"):
        unpack(_forged(100, bomb))


def test_a_batch_past_the_bound_is_refused_when_packed_and_when_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed = pack(_records(5))
    monkeypatch.setattr(spool_module, "_MAX_BODY", 100)  # 1 GiB otherwise
    with pytest.raises(
        ValueError, match=r"a batch of \d+ bytes packed, more than a packed batch holds \(100\)"
    ):
        pack(_records(5))
    assert pack(_records(5), compress=False)  # the older layout has no length field
    with pytest.raises(ValueError, match=r"says it holds \d+ bytes, more than a packed batch can \(100\)"):
        unpack(packed)
    spool = Spool(tmp_path / "s.db")
    with pytest.raises(PublishError, match="cannot be written ahead: a batch of"):
        spool.write_ahead([_records(5)])
    spool.close()


@pytest.mark.parametrize("compress", [True, False])
def test_unpack_of_damaged_bytes_returns_records_or_a_value_error_never_anything_else(compress: bool) -> None:
    records = ODD + _records(5)
    packed = pack(records, compress=compress)
    rng = random.Random(19)
    refused: list[str] = []
    for _ in range(3_000):
        damaged = bytearray(packed)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(damaged))
            match rng.randrange(3):
                case 0:
                    damaged[at] = rng.randrange(256)
                case 1:
                    del damaged[at]
                case _:
                    damaged.insert(at, rng.randrange(256))
        try:
            read = unpack(bytes(damaged))
        except ValueError as exc:
            refused.append(str(exc))
            continue
        assert all(isinstance(r, Record) for r in read)
        assert all(isinstance(h, tuple) for r in read for h in r.headers)
        if compress:  # checksummed: what is read back is what was packed (the damage undid itself)
            assert bytes(damaged) == packed
            assert read == records
    assert refused
    assert all(m.startswith(("not a packed batch", "a damaged packed batch")) for m in refused)
    if compress:
        assert sum("checksum mismatch" in m for m in refused) > 0.9 * len(refused)


def test_a_batch_is_one_row_and_forgetting_deletes_ranges_of_batches(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    first = spool.write_ahead([_records(3), _records(2, 3), _records(4, 5)])
    assert _rows(path) == [(first, 3), (first + 1, 2), (first + 2, 4)]
    second = spool.write_ahead([_records(1, 9)], forget=[(first, first + 1)])
    assert second == first + 3
    assert _rows(path) == [(first + 2, 4), (second, 1)]
    spool.close()


def test_rows_are_written_under_the_numbers_they_were_given(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    assert spool.next_written_ahead == 1
    assert spool.write_ahead([_records(1, 2), _records(1, 1)], seqs=[7, 3]) == 7
    assert _rows(path) == [(3, 1), (7, 1)]
    assert spool.next_written_ahead == 8  # after the last number written
    assert spool.write_ahead([_records(1, 3)]) == 8
    with pytest.raises(PublishError, match="UNIQUE constraint failed"):
        spool.write_ahead([_records(1), _records(1, 4)], seqs=[9, 7])  # 7 is taken: nothing written
    with pytest.raises(ValueError, match="2 batches to write ahead, 1 sequence numbers"):
        spool.write_ahead([_records(1), _records(1, 4)], seqs=[9])
    assert _rows(path) == [(3, 1), (7, 1), (8, 1)]
    assert spool.next_written_ahead == 9
    spool.close()  # SIGKILL

    again = Spool(path)
    assert _numbers(_spooled(again)) == [1, 2, 3]  # in the order of their numbers
    assert again.next_written_ahead == 1
    again.close()


def test_nothing_settled_every_record_is_recovered_in_order_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    crashed = Spool(path)
    crashed.append(_records(2))  # spooled during an outage, before the crash
    crashed.write_ahead([_records(3, 2), _records(1, 5)])
    crashed.write_ahead([ODD, _records(2, 6)])
    crashed.close()  # SIGKILL: nothing else ran

    spool = Spool(path)
    assert spool.recovered == 6 + len(ODD)
    spooled = _spooled(spool)
    assert spooled[:6] == _records(6)
    assert spooled[6 : 6 + len(ODD)] == [Record(r.topic, r.key, r.value, r.headers) for r in ODD]
    assert _numbers(spooled[6 + len(ODD) :]) == [6, 7]
    assert _rows(path) == []
    spool.close()

    again = Spool(path)  # recovered once: reopening moves nothing again
    assert again.recovered == 0
    assert _spooled(again) == spooled
    assert again.write_ahead([_records(1, 8)]) == 1  # and the write-ahead goes on
    again.close()


def test_uncompressed_batches_of_an_older_version_are_recovered_in_order_with_compressed_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    crashed = Spool(path)
    crashed.write_ahead([_records(2), _records(2, 2), _records(2, 4)])
    crashed.close()
    with sqlite3.connect(path) as db:  # the middle batch as a version before compression wrote it
        db.execute(
            "UPDATE written_ahead SET packed = ? WHERE seq = 2", (pack(_records(2, 2), compress=False),)
        )
    spool = Spool(path)
    assert spool.recovered == 6
    assert _spooled(spool) == _records(6)
    spool.close()


def test_settled_batches_are_not_recovered_the_others_are_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    crashed = Spool(path)
    first = crashed.write_ahead([_records(2, 0), _records(2, 2), _records(2, 4), _records(2, 6)])
    crashed.write_ahead([_records(2, 8)], forget=[(first, first), (first + 2, first + 2)])
    crashed.close()

    spool = Spool(path)
    assert spool.recovered == 6
    assert _numbers(_spooled(spool)) == [2, 3, 6, 7, 8, 9]
    spool.close()


def test_recovered_records_are_counted_like_appended_ones(tmp_path: Path) -> None:
    records = _records(20) + ODD[1:3]
    crashed = Spool(tmp_path / "a.db")
    crashed.write_ahead([records[:7], records[7:]])
    crashed.close()
    recovered = Spool(tmp_path / "a.db")
    appended = Spool(tmp_path / "b.db")
    appended.append(records)
    assert (
        (recovered.count, recovered.bytes)
        == (appended.count, appended.bytes)
        == (len(records), appended.bytes)
    )
    assert appended.bytes > 0
    recovered.close()
    appended.close()


OLD_SCHEMA = """
CREATE TABLE spool (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, headers BLOB NOT NULL
);
CREATE TABLE received (
  seq INTEGER PRIMARY KEY,
  topic TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, headers BLOB NOT NULL
);
CREATE TABLE cursors (
  source TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (source, name)
);
"""
"""The tables as the version before packed batches created them (one write-ahead row per record)."""


def _old_row(record: Record) -> tuple[str, bytes, bytes, bytes]:
    headers = orjson.dumps([[k, v.decode()] for k, v in record.headers])
    return record.topic, record.key, record.value, headers


def test_an_older_versions_write_ahead_is_recovered_in_order_after_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.executemany(
            "INSERT INTO spool (topic, key, value, headers) VALUES (?, ?, ?, ?)", map(_old_row, _records(2))
        )
        written = dict(zip([7, 5, 6, 9], _records(4, 2), strict=True))  # seq -> record, inserted out of order
        db.executemany(
            "INSERT INTO received (seq, topic, key, value, headers) VALUES (?, ?, ?, ?, ?)",
            [(seq, *_old_row(r)) for seq, r in written.items()],
        )
        db.execute("INSERT INTO cursors VALUES ('src', 'window', 'w1')")

    spool = Spool(path)
    assert spool.recovered == 4
    assert spool.count == 6
    assert _spooled(spool) == _records(2) + [written[seq] for seq in sorted(written)]
    assert spool.load("src", "window") == "w1"
    assert _rows(path) == []  # the older table is gone; batches go to the new one
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "received" not in tables
    spool.write_ahead([_records(2, 10)])
    spool.close()

    again = Spool(path)
    assert again.recovered == 2
    assert _numbers(_spooled(again)) == [0, 1, 3, 4, 2, 5, 10, 11]
    again.close()


def test_an_older_version_started_on_a_newer_file_runs_and_both_tables_recover_on_upgrade(
    tmp_path: Path,
) -> None:
    """A downgrade: the older version recreates its ``received`` table (the newer one dropped it)
    and writes ahead into it; the batches the newer one wrote wait in ``written_ahead``. The next
    newer start recovers both, the newer one's (older) batches first."""
    path = tmp_path / "s.db"
    newer = Spool(path)
    newer.write_ahead([_records(2)])
    newer.close()
    with sqlite3.connect(path) as db:  # what the older version's start and write-ahead do
        db.executescript(OLD_SCHEMA.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        db.executemany(
            "INSERT INTO received (seq, topic, key, value, headers) VALUES (?, ?, ?, ?, ?)",
            [(seq, *_old_row(r)) for seq, r in enumerate(_records(2, 5), 1)],
        )
    again = Spool(path)
    assert again.recovered == 4
    assert _numbers(_spooled(again)) == [0, 1, 5, 6]
    again.close()


def test_a_received_table_of_an_unknown_layout_stops_the_start_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Spool(path).close()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE received (seq INTEGER PRIMARY KEY, records INTEGER, packed BLOB)")
    with pytest.raises(FatalError, match=r"'received' of an unknown layout \(columns packed, records, seq\)"):
        Spool(path)


def test_an_older_versions_empty_write_ahead_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    spool = Spool(path)
    assert (spool.recovered, spool.count) == (0, 0)
    assert spool.write_ahead([_records(1)]) == 1
    assert _rows(path) == [(1, 1)]
    spool.close()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("UPDATE written_ahead SET packed = substr(packed, 1, 40)", "written_ahead row 1.*checksum mismatch"),
        ("UPDATE written_ahead SET records = 99", "written_ahead row 1.*the row says 99"),
        (
            "UPDATE written_ahead SET packed = 'swa3 text'",
            "written_ahead row 1.*its packed batch is TEXT, not a BLOB",
        ),
        (
            "UPDATE written_ahead SET packed = 1 << 40",
            "written_ahead row 1.*is an INTEGER, not a BLOB",
        ),  # no 1 TB
        ("UPDATE written_ahead SET packed = 1.5", "written_ahead row 1.*is a REAL, not a BLOB"),
    ],
)
def test_an_unreadable_written_ahead_batch_stops_the_start_naming_the_row(
    tmp_path: Path, damage: str, message: str
) -> None:
    path = tmp_path / "s.db"
    crashed = Spool(path)
    crashed.write_ahead([_records(3)])
    crashed.close()
    with sqlite3.connect(path) as db:
        db.execute(damage)
    with pytest.raises(FatalError, match=message):
        Spool(path)
    with sqlite3.connect(path) as db:  # nothing was moved: the batch is still there to look at
        assert db.execute("SELECT COUNT(*) FROM written_ahead").fetchone()[0] == 1
        assert db.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 0


def test_a_written_ahead_header_value_damaged_into_not_utf8_stops_the_start_naming_the_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    crashed = Spool(path)
    crashed.write_ahead([ODD[1:2]])  # its header ("ce_type", b"x")
    crashed.close()
    with sqlite3.connect(path) as db:
        [(packed,)] = db.execute("SELECT packed FROM written_ahead")
        packed = pack(unpack(packed), compress=False)  # the damage is made where it can be seen
        assert packed.count(b"\xc4\x01x") == 1
        db.execute("UPDATE written_ahead SET packed = ?", (packed.replace(b"\xc4\x01x", b"\xc4\x01\xff"),))
    with pytest.raises(FatalError, match=r"written_ahead row 1.*a header value is not UTF-8"):
        Spool(path)  # a FatalError, not the UnicodeDecodeError moving it into the spool would raise
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM written_ahead").fetchone()[0] == 1
        assert db.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 0


def test_forget_ranges_are_sorted_and_merged() -> None:
    assert _ranges([]) == []
    assert _ranges([4, 1, 2, 7, 5, 6]) == [(1, 2), (4, 7)]
    assert _ranges([3, 4, 5, 4, 1, 2, 6, 7, 8]) == [(1, 8)]


def _encode(event: Event, source: str) -> Record:
    return encode(event, "p.")


def _batch(events: list[Event], ahead: WriteAhead) -> Batch:
    batch = Batch("s", events, 0.0, held=anyio.Event())
    batch.records = ahead.encode(batch)
    return batch


@pytest.mark.anyio
async def test_each_written_batch_knows_its_row_and_settling_forgets_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    ahead = WriteAhead(spool, _encode, 0.01)
    batches = [_batch(_events(2, 2 * i), ahead) for i in range(4)]
    async with anyio.create_task_group() as tg:
        for batch in batches:
            tg.start_soon(ahead.hold, batch)
        await anyio.wait_all_tasks_blocked()
        await ahead.commit()  # releases every hold
    assert [b.written for b in batches] == [1, 2, 3, 4]
    assert _rows(path) == [(1, 2), (2, 2), (3, 2), (4, 2)]
    for batch in (batches[0], batches[1], batches[3]):
        ahead.settled(batch)
    await ahead.commit()
    assert _rows(path) == [(3, 2)]
    spool.close()
    again = Spool(path)
    assert _numbers(_spooled(again)) == [4, 5]
    again.close()


@pytest.mark.anyio
async def test_what_a_failed_commit_had_to_forget_is_forgotten_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = Spool(path)
    ahead = WriteAhead(spool, _encode, 0.01)
    written, failed = _batch(_events(2), ahead), _batch(_events(1, 2), ahead)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ahead.hold, written)
        await anyio.wait_all_tasks_blocked()
        await ahead.commit()
    ahead.settled(written)
    spool._db.execute("ALTER TABLE written_ahead RENAME TO hidden")  # the database fails for a while
    async with anyio.create_task_group() as tg:
        tg.start_soon(ahead.hold, failed)
        await anyio.wait_all_tasks_blocked()
        await ahead.commit()  # releases the hold although nothing could be written
    assert failed.written is None
    spool._db.execute("ALTER TABLE hidden RENAME TO written_ahead")
    assert _rows(path) == [(1, 2)]
    await ahead.commit()
    assert _rows(path) == []
    spool.close()


def test_encoded_records_header_values_are_utf8_so_the_write_ahead_skips_the_check() -> None:
    names = ["plain", "ünïcödé", "日本語", "emoji 🎧", 'quote " and \\ and \n']
    events = [
        Event(
            topic="t",
            type=f"x.{name}",
            source=name,
            key=f"{name}:{i}",
            data={"n": name},
            id=name if i % 2 else None,
            snapshot=bool(i % 3),
            deviations=(f"$.{name}",) if i % 4 else (),
        )
        for i, name in enumerate(names * 4)
    ]
    records = [encode(e, "p.") for e in events]
    for record in records:  # encoding rule 9
        assert all(isinstance(value.decode(), str) for _, value in record.headers)
    assert pack(records, encoded=True) == pack(records)  # the same bytes, without the check
    assert unpack(pack(records, encoded=True)) == records
