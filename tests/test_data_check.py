"""`gluonfuse data verify` and `gluonfuse data stats`: clean files pass, every kind of damage is
reported by record and byte offset with exit code 1, the statistics are the true ones."""
import json
import shutil

import numpy as np
import pytest

import datagen
from gluonfuse.data import recordio
from gluonfuse.data.prepare import prepare


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("check")
    archive = base / "cifar-10-python.tar.gz"
    tr_x, tr_y, te_x, te_y = datagen.cifar10_archive(archive, per_batch=8, n_test=10)
    prepare("cifar10", src=str(archive), out=str(base / "c10"), echo=lambda *_: None)
    return base / "c10", (tr_x, tr_y, te_x, te_y)


@pytest.fixture
def copy(prepared, tmp_path):
    shutil.copytree(prepared[0], tmp_path / "c10")
    return tmp_path / "c10"


def test_clean_dataset_verifies(prepared, cli):
    res = cli("data", "verify", prepared[0])
    assert res.exit_code == 0, res.output
    assert res.output.count(": OK") == 2
    assert "40 records; every image decodes; labels checked against 10 classes" in res.output
    assert "train.idx: 40 entries, every offset starts a record" in res.output
    assert "count and per-class counts agree with meta.json (train)" in res.output


def _offsets(rec):
    with recordio.RecordReader(rec) as reader:
        return [off for _, off, _ in reader]


def test_truncated_rec(copy, cli):
    rec = copy / "train.rec"
    last = _offsets(rec)[-1]
    rec.write_bytes(rec.read_bytes()[:last + 20])
    res = cli("data", "verify", rec)
    assert res.exit_code == 1
    assert f"record 39 at byte offset {last}: truncated" in res.output
    assert "Error:" in res.output.splitlines()[-1]


def test_image_that_does_not_decode(copy, cli):
    rec = copy / "test.rec"
    off = _offsets(rec)[3]
    data = bytearray(rec.read_bytes())
    data[off + 8 + 24:off + 8 + 24 + 8] = b"NOTAPNG!"  # the PNG signature after frame + IRHeader
    rec.write_bytes(bytes(data))
    res = cli("data", "verify", rec)
    assert res.exit_code == 1
    assert f"record 3 at byte offset {off} (key 3): the image does not decode" in res.output


def test_label_out_of_range_and_count_mismatch(copy, cli):
    with recordio.RecordReader(copy / "test.rec") as reader:
        payloads = [p for _, _, p in reader]
    with recordio.open_writer(copy / "test.rec", copy / "test.idx") as w:
        for i, p in enumerate(payloads):
            header, image = recordio.unpack(p)
            label = {4: 12, 5: 2.5, 6: float("nan")}.get(i, header.label)
            w.write(i, recordio.pack(label, image, key=i))
    res = cli("data", "verify", copy / "test.rec")
    assert res.exit_code == 1
    assert "record 4 at byte offset" in res.output and "label 12 is not a class index 0..9" in res.output
    assert "label 2.5 is not a class index" in res.output and "label nan is not" in res.output
    assert "per-class counts differ from meta.json" in res.output
    meta = json.loads((copy / "meta.json").read_text())
    meta["splits"]["train"]["count"] += 1
    meta["splits"]["train"]["per_class"][0] += 1
    (copy / "meta.json").write_text(json.dumps(meta))
    res = cli("data", "verify", copy / "train.rec")
    assert res.exit_code == 1 and "meta.json says 41 train images, the file has 40 records" in res.output


def test_idx_that_disagrees(copy, cli):
    lines = (copy / "train.idx").read_text().splitlines()
    key, off = lines[7].split("\t")
    lines[7] = f"{key}\t{int(off) + 4}"
    (copy / "train.idx").write_text("\n".join(lines[:-1]) + "\n")
    res = cli("data", "verify", copy / "train.rec")
    assert res.exit_code == 1
    assert f"key 7 points to byte offset {int(off) + 4}, which is not the start of a record" in res.output
    assert "39 entries for 40 records" in res.output
    (copy / "train.idx").write_text("7\tseven\n")
    res = cli("data", "verify", copy / "train.rec")
    assert res.exit_code == 1 and "train.idx line 1: expected 'key<TAB>byte offset'" in res.output


def test_unfinished_folder_and_missing_file(copy, cli):
    for rec in copy.glob("*.rec"):
        rec.unlink()
    res = cli("data", "verify", copy)
    assert res.exit_code == 1 and "holds no .rec files" in res.output
    (copy / "meta.json").unlink()
    res = cli("data", "verify", copy)
    assert res.exit_code == 1 and "did not finish" in res.output
    res = cli("data", "verify", copy / "nothing.rec")
    assert res.exit_code == 1 and "record file not found" in res.output



def test_stats_are_the_true_statistics(prepared, cli):
    out, (tr_x, tr_y, _, _) = prepared
    res = cli("data", "stats", out / "train.rec", "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    px = tr_x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(s["mean"], px.mean(0), atol=1e-3)
    np.testing.assert_allclose(s["std"], px.std(0), atol=1e-3)
    assert s["histogram"] == {str(k): int(v) for k, v in enumerate(np.bincount(tr_y)) if v}
    assert s["count"] == 40 and s["sizes"] == {"32x32": 40}
    meta = json.loads((out / "meta.json").read_text())
    np.testing.assert_allclose(s["mean"], meta["mean"], atol=1e-3)
    text = cli("data", "stats", out / "train.rec").output
    assert "mean (R, G, B): " + ", ".join(f"{x:.3f}" for x in s["mean"]) in text


def test_stats_names_damage(copy, cli):
    rec = copy / "train.rec"
    rec.write_bytes(rec.read_bytes()[:-7])
    res = cli("data", "stats", rec)
    assert res.exit_code == 1 and "truncated" in res.output and "byte offset" in res.output
