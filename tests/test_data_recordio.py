"""The pure-Python RecordIO writer and reader against MXNet's own (mx.recordio)."""
import os

import numpy as np
import pytest

from gluonfuse.data import recordio
from gluonfuse.errors import DataError

M = recordio._MAGIC_BYTES
# payloads that exercise dmlc's splitting at aligned magic numbers and the 4-byte padding
PAYLOADS = [b"", b"a", b"abcd", M, b"xx" + M + b"yy", b"abcd" + M + b"efgh" + M + M + b"z", M + b"123",
            b"12" + M, b"1" + M + b"234", bytes(range(256)) * 5]


def _write_ours(tmp_path, payloads, name="g"):
    rec, idx = tmp_path / f"{name}.rec", tmp_path / f"{name}.idx"
    with recordio.open_writer(rec, idx) as w:
        for i, p in enumerate(payloads):
            w.write(i * 3, p)
    return rec, idx


def test_writer_bytes_equal_mxnet(tmp_path):
    import mxnet as mx

    w = mx.recordio.MXIndexedRecordIO(str(tmp_path / "m.idx"), str(tmp_path / "m.rec"), "w")
    for i, p in enumerate(PAYLOADS):
        w.write_idx(i * 3, p)
    w.close()
    rec, idx = _write_ours(tmp_path, PAYLOADS)
    assert rec.read_bytes() == (tmp_path / "m.rec").read_bytes()
    assert idx.read_text() == (tmp_path / "m.idx").read_text()


def test_mxnet_reads_ours_and_we_read_mxnets(tmp_path):
    import mxnet as mx

    rec, idx = _write_ours(tmp_path, PAYLOADS)
    r = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
    assert [r.read_idx(i * 3) for i in range(len(PAYLOADS))] == PAYLOADS
    r.close()
    w = mx.recordio.MXRecordIO(str(tmp_path / "m.rec"), "w")
    for p in PAYLOADS:
        w.write(p)
    w.close()
    with recordio.RecordReader(tmp_path / "m.rec") as reader:
        assert [p for _, _, p in reader] == PAYLOADS
    entries = recordio.read_idx(idx)
    with recordio.RecordReader(rec) as reader:
        assert [reader.read_at(off)[0] for _, off in entries] == PAYLOADS


@pytest.mark.parametrize("label", [3, 7.5, [1, 2.5, -4], np.array([0.25, 9], np.float32)])
def test_pack_matches_mxnet_and_unpacks(label):
    import mxnet as mx

    ours = recordio.pack(label, b"\x89PNG...", key=42)
    theirs = mx.recordio.pack(mx.recordio.IRHeader(0, label, 42, 0), b"\x89PNG...")
    assert ours == theirs
    header, image = recordio.unpack(ours)
    assert image == b"\x89PNG..." and header.id == 42
    np.testing.assert_allclose(header.label, label)


def test_truncated_rec_names_record_and_offset(tmp_path):
    rec, _ = _write_ours(tmp_path, [b"x" * 100, b"y" * 100, b"z" * 100])
    data = rec.read_bytes()
    rec.write_bytes(data[:-50])
    with recordio.RecordReader(rec) as reader:
        with pytest.raises(DataError, match=r"record 2 at byte offset 216: truncated"):
            list(reader)


def test_a_rec_missing_only_its_last_padding_is_truncated(tmp_path):
    rec, _ = _write_ours(tmp_path, [b"x" * 100, b"y" * 101])  # 101 bytes: 3 bytes of padding follow
    rec.write_bytes(rec.read_bytes()[:-1])
    with recordio.RecordReader(rec) as reader:
        with pytest.raises(DataError, match=r"record 1 at byte offset 108: truncated \(the record's padding"):
            list(reader)


def test_bad_magic_names_offset(tmp_path):
    rec, _ = _write_ours(tmp_path, [b"x" * 100, b"y" * 100])
    data = bytearray(rec.read_bytes())
    data[108] ^= 0xFF  # first byte of the second record's magic number
    rec.write_bytes(bytes(data))
    with recordio.RecordReader(rec) as reader:
        with pytest.raises(DataError, match=r"record 1 at byte offset 108: no RecordIO magic number"):
            list(reader)


def test_not_a_rec_file(tmp_path):
    path = tmp_path / "x.rec"
    path.write_bytes(b"hello world, this is text")
    with pytest.raises(DataError, match="byte offset 0.*not a .rec file"):
        list(recordio.RecordReader(path))


@pytest.mark.parametrize("line, message", [
    ("0\t0\nbroken line\n", r"line 2: expected 'key<TAB>byte offset'"),
    ("0\t0\n1\t99999\n", r"line 2: key 1 points to byte offset 99999, outside the .rec file"),
])
def test_bad_idx(tmp_path, line, message):
    rec, idx = _write_ours(tmp_path, [b"x" * 10, b"y" * 10])
    idx.write_text(line)
    with pytest.raises(DataError, match=message):
        recordio.read_idx(idx, os.path.getsize(rec))


def test_short_payload_is_a_data_error():
    with pytest.raises(DataError, match="too short"):
        recordio.unpack(b"abc", "record 5")
    with pytest.raises(DataError, match="header says 9 labels"):
        recordio.unpack(recordio._IR.pack(9, 0, 0, 0) + b"xx", "record 5")


def test_interrupted_writer_leaves_nothing_and_keeps_old_file(tmp_path):
    rec, idx = _write_ours(tmp_path, [b"old"])
    before = rec.read_bytes(), idx.read_text()
    with pytest.raises(KeyboardInterrupt):
        with recordio.open_writer(rec, idx) as w:
            w.write(0, b"new" * 100)
            raise KeyboardInterrupt
    assert (rec.read_bytes(), idx.read_text()) == before
    assert sorted(os.listdir(tmp_path)) == ["g.idx", "g.rec"]


def test_data_library_does_not_import_mxnet_or_models():
    """tools/im2rec starts fast because packing never imports mxnet (seconds on a small machine)."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import sys; import gluonfuse.data.im2rec, gluonfuse.data.prepare, gluonfuse.data.sources, "
            "gluonfuse.data.check, gluonfuse.data.fetch, gluonfuse.data.presets; "
            "print(sorted(m for m in sys.modules if m == 'mxnet' or m.startswith('gluonfuse.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
