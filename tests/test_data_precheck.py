"""The cheap check made before MXNet's C++ reader opens a ``.rec`` (gluonfuse.data.check.check_record_file).

``ImageRecordIter`` does not report a damaged file: a ``.rec`` cut short under an intact ``.idx`` is
"Segmentation fault: 11" (exit 255) or, from run to run, an error about a garbage file offset; a bad
magic number is an abort. The trainer, ``eval`` and ``analyze`` check every file first, so each damage
below is one line naming the file and the byte offset, exit code 1.
"""
import os
import shutil

import pytest

from conftest import run_gluonfuse
from gluonfuse.data import recordio
from gluonfuse.data.check import check_record_file, check_split_file
from gluonfuse.errors import DataError
from train_fixtures import *  # noqa: F401,F403 - pattern_data, trained_run
from train_fixtures import train_args


def _offsets(idx):
    return [off for _, off in recordio.read_idx(idx)]


def _truncate(rec, idx):
    with open(rec, "r+b") as f:
        f.truncate(5000)
    return "past the end of the file (5000 bytes)", next(o for o in _offsets(idx) if o >= 5000)


def _idx_past_end(rec, idx):
    lines = idx.read_text().splitlines()
    key = lines[-1].split("\t")[0]
    far = os.path.getsize(rec) + 96
    idx.write_text("\n".join(lines[:-1] + [f"{key}\t{far}"]) + "\n")
    return f"places key {key} at byte offset {far}, past the end of the file", far


def _magic(which):
    def damage(rec, idx):
        off = _offsets(idx)[0 if which == "first" else -1]
        data = bytearray(rec.read_bytes())
        data[off:off + 4] = b"\0\0\0\0"
        rec.write_bytes(bytes(data))
        return f"at byte offset {off}: no RecordIO magic number", off
    return damage


def _empty(rec, idx):
    rec.write_bytes(b"")
    return "empty file (0 bytes)", None


def _missing_idx(rec, idx):
    idx.unlink()
    return f"{idx} not found", None


def _idx_fewer(rec, idx):
    lines = idx.read_text().splitlines()
    idx.write_text("\n".join(lines[:7] + lines[8:]) + "\n")  # a line from the middle
    return f"lists {len(lines) - 1} records, meta.json says {len(lines)}", None


def _idx_more(rec, idx):
    offsets = _offsets(idx)
    inside = offsets[7] + 8  # aligned, inside record 7: the cheap checks cannot tell, the count can
    idx.write_text(idx.read_text() + f"999\t{inside}\n")
    return f"lists {len(offsets) + 1} records, meta.json says {len(offsets)}", None


DAMAGES = {"truncated at 5000 bytes": _truncate, "idx offset past the end": _idx_past_end,
           "bad magic in the first record": _magic("first"), "bad magic in the last record": _magic("last"),
           "zero-length .rec": _empty, "missing .idx": _missing_idx, "idx with fewer entries": _idx_fewer,
           "idx with more entries": _idx_more}


def _damaged_copy(pattern_data, tmp_path, split, damage):
    data = tmp_path / "data"
    shutil.copytree(pattern_data, data)
    rec, idx = data / f"{split}.rec", data / f"{split}.idx"
    message, offset = DAMAGES[damage](rec, idx)
    return data, rec, message, offset


def _assert_one_line(proc, rec, message, offset):
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("Error: ") and "internal" not in lines[0]
    assert str(rec) in lines[0] and message in lines[0]
    if offset is not None:
        assert f"byte offset {offset}" in lines[0]
    assert "Segmentation" not in proc.stderr and "Traceback" not in proc.stderr


def test_clean_files_pass_and_are_counted(pattern_data, tmp_path):
    rec = os.path.join(pattern_data, "train.rec")
    assert check_record_file(rec) == 160
    assert check_split_file(rec) == 160 and check_split_file(os.path.join(pattern_data, "test.rec")) == 50
    with pytest.raises(DataError, match="160 records, expected 161"):
        check_record_file(rec, expected=161)
    lone = tmp_path / "lone.rec"  # no .idx, no meta.json: every record header is walked
    shutil.copy(rec, lone)
    assert check_record_file(lone) == 160 and check_split_file(lone) == 160
    with open(lone, "r+b") as f:
        f.truncate(os.path.getsize(lone) - 10)
    with pytest.raises(DataError, match=r"lone.rec: record 159 at byte offset \d+: truncated"):
        check_record_file(lone)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_each_damage_is_a_data_error_naming_file_and_offset(pattern_data, tmp_path, damage):
    data, rec, message, offset = _damaged_copy(pattern_data, tmp_path, "train", damage)
    with pytest.raises(DataError) as err:
        check_split_file(rec)
    text = str(err.value)
    assert str(rec) in text and message in text
    if offset is not None:
        assert f"byte offset {offset}" in text
    if damage not in ("zero-length .rec", "missing .idx"):
        assert f"'gluonfuse data verify {data}' checks every record" in text


def test_the_index_must_cover_the_file(pattern_data, tmp_path):
    data, rec, _, _ = _damaged_copy(pattern_data, tmp_path, "test", "zero-length .rec")
    shutil.copy(os.path.join(pattern_data, "test.rec"), rec)
    idx = data / "test.idx"
    lines = idx.read_text().splitlines()
    idx.write_text("\n".join(lines[:-1]) + "\n")  # the last record is not indexed
    with pytest.raises(DataError, match=r"ends at byte \d+, but the file ends at byte \d+: .*disagree"):
        check_record_file(rec)
    idx.write_text("\n".join(lines[1:]) + "\n")  # the first is not
    with pytest.raises(DataError, match=r"starts at byte offset \d+, not 0"):
        check_record_file(rec)
    idx.write_text("\n".join(lines[:3] + [lines[3].split("\t")[0] + "\t" + str(_offsets_of(lines)[3] + 2)]
                             + lines[4:]) + "\n")
    with pytest.raises(DataError, match="cannot start a record"):
        check_record_file(rec)
    idx.write_text("\n".join(lines + [f"77\t{_offsets_of(lines)[5]}"]) + "\n")
    with pytest.raises(DataError, match=r"keys 5 and 77 at the same byte offset"):
        check_record_file(rec)


def _offsets_of(lines):
    return [int(line.split("\t")[1]) for line in lines]


def test_damage_in_the_middle_is_left_to_verify(pattern_data, tmp_path, cli):
    """The cheap check reads two record headers; a bad record in between is found by verify."""
    data, rec, _, _ = _damaged_copy(pattern_data, tmp_path, "train", "zero-length .rec")
    shutil.copy(os.path.join(pattern_data, "train.rec"), rec)
    off = _offsets(data / "train.idx")[50]
    raw = bytearray(rec.read_bytes())
    raw[off:off + 4] = b"\0\0\0\0"
    rec.write_bytes(bytes(raw))
    assert check_split_file(rec) == 160
    res = cli("data", "verify", data)
    assert res.exit_code == 1 and f"record 50 at byte offset {off}: no RecordIO magic number" in res.output


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_train_on_a_damaged_dataset_is_one_line(pattern_data, tmp_path, damage):
    data, rec, message, offset = _damaged_copy(pattern_data, tmp_path, "train", damage)
    proc = run_gluonfuse(*train_args(data, tmp_path / "runs", "--epochs", "1", "--cpus", "1"))
    _assert_one_line(proc, rec, message, offset)
    assert not os.path.exists(tmp_path / "runs")  # found before a run directory was made


# the same check as train's behind another command: four damages run by default, all with the slow ones
EVAL_FAST = ("truncated at 5000 bytes", "bad magic in the last record", "missing .idx", "idx with fewer entries")


@pytest.mark.parametrize("damage", [d if d in EVAL_FAST else pytest.param(d, marks=pytest.mark.slow)
                                    for d in sorted(DAMAGES)])
def test_eval_on_a_damaged_test_set_is_one_line(pattern_data, trained_run, tmp_path, damage):
    run_dir, _ = trained_run
    data, rec, message, offset = _damaged_copy(pattern_data, tmp_path, "test", damage)
    proc = run_gluonfuse("eval", run_dir, "--data", rec)
    _assert_one_line(proc, rec, message, offset)


def test_analyze_on_a_truncated_test_set_is_one_line(pattern_data, trained_run, tmp_path):
    run_dir, _ = trained_run
    data, rec, message, offset = _damaged_copy(pattern_data, tmp_path, "test", "truncated at 5000 bytes")
    proc = run_gluonfuse("analyze", run_dir, "--data", rec)
    _assert_one_line(proc, rec, message, offset)
