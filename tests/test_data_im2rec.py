"""tools/im2rec and `gluonfuse im2rec`: MXNet im2rec's behaviour, both directions of compatibility,
thread-count determinism, bad images, interrupted runs and bad command lines."""
import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import datagen
from conftest import REPO, run_gluonfuse
from gluonfuse.data import lists, pack, recordio
from gluonfuse.data.check import stats, verify
from gluonfuse.data.im2rec import parse_args, run

# the im2rec.py that ships inside the installed mxnet package
MX_IM2REC = os.path.join(os.path.dirname(importlib.util.find_spec("mxnet").origin), "tools", "im2rec.py")
TOOL = os.path.join(REPO, "tools", "im2rec")


def run_tool(*args, cwd=None):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def run_mxnet_im2rec(*args):
    out = subprocess.run([sys.executable, MX_IM2REC, *map(str, args)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same folder listed and packed by MXNet's im2rec (mx/) and by tools/im2rec (gf/)."""
    base = tmp_path_factory.mktemp("im2rec")
    root = base / "images"
    datagen.image_folder(root, per_class=(7, 6, 5))
    (base / "mx").mkdir()
    (base / "gf").mkdir()
    ratios = ["--train-ratio", "0.6", "--test-ratio", "0.25"]
    run_mxnet_im2rec(base / "mx" / "d", root, "--list", "--recursive", *ratios)
    # flags in any order: --exts before the positionals used to swallow them
    lst = run_tool("--list", "--exts", ".jpg", ".png", ".jpeg", base / "gf" / "d", root, "--recursive",
                   *ratios)
    assert lst.returncode == 0, lst.stderr
    pack_args = ["--resize", "30", "--num-thread", "2", "--quality", "90"]
    run_mxnet_im2rec(base / "mx" / "d", root, *pack_args)
    packed = run_tool(base / "gf" / "d", root, *pack_args)
    assert packed.returncode == 0, packed.stderr
    return base, root, lst.stdout + packed.stdout


def test_lists_are_mxnets_and_class_map_is_written(both):
    base, root, out = both
    names = sorted(f for f in os.listdir(base / "mx") if f.endswith(".lst"))
    assert names == ["d_test.lst", "d_train.lst", "d_val.lst"]
    for name in names:
        assert (base / "gf" / name).read_text() == (base / "mx" / name).read_text()
    assert (base / "gf" / "d_classes.txt").read_text() == "0\tclass0\n1\tclass1\n2\tclass2\n"
    assert lists.read_class_map(base / "gf" / "d_classes.txt") == ["class0", "class1", "class2"]
    assert "listed 18 images in 3 classes" in out


def test_packed_records_are_mxnets_bytes(both):
    base, _, out = both
    for name in ("d_train", "d_test", "d_val"):
        for ext in (".rec", ".idx"):
            assert (base / "gf" / (name + ext)).read_bytes() == (base / "mx" / (name + ext)).read_bytes()
    assert "d_train.rec: packed 10 images, skipped 0" in out


def test_mxnet_readers_read_our_files(tmp_path):
    """ImageRecordIter, ImageRecordDataset and MXIndexedRecordIO on lossless (PNG) records we wrote."""
    import mxnet as mx

    root = tmp_path / "images"
    datagen.image_folder(root, per_class=(3, 3), size=(32, 32))
    # fixed 32x32 so ImageRecordIter needs no resize: pixel-exact comparison
    for p in root.rglob("*.*"):
        cv2.imwrite(str(p), cv2.resize(cv2.imread(str(p)), (32, 32)))
    args = parse_args([str(tmp_path / "p"), str(root), "--list", "--recursive", "--no-shuffle"])
    run(args, echo=lambda *_: None)
    run(parse_args([str(tmp_path / "p"), str(root), "--encoding", ".png", "--quiet"]), echo=lambda *_: None)
    items = lists.read_list(tmp_path / "p.lst")
    expect = {it.index: (cv2.imread(str(root / it.path))[:, :, ::-1], it.label) for it in items}

    ds = mx.gluon.data.vision.ImageRecordDataset(str(tmp_path / "p.rec"))
    assert len(ds) == len(items)
    for i, it in enumerate(items):
        img, label = ds[i]
        np.testing.assert_array_equal(img.asnumpy(), expect[it.index][0])
        assert label == expect[it.index][1]

    r = mx.recordio.MXIndexedRecordIO(str(tmp_path / "p.idx"), str(tmp_path / "p.rec"), "r")
    for it in items:
        header, img = mx.recordio.unpack_img(r.read_idx(it.index))
        assert header.id == it.index and header.label == it.label
        np.testing.assert_array_equal(img[:, :, ::-1], expect[it.index][0])
    r.close()

    it = mx.io.ImageRecordIter(path_imgrec=str(tmp_path / "p.rec"), path_imgidx=str(tmp_path / "p.idx"),
                               data_shape=(3, 32, 32), batch_size=6, preprocess_threads=1)
    batch = next(iter(it))
    data, labels = batch.data[0].asnumpy(), batch.label[0].asnumpy()
    for k, item in enumerate(items):
        np.testing.assert_array_equal(data[k].transpose(1, 2, 0), expect[item.index][0])
        assert labels[k] == expect[item.index][1]


def test_gluonfuse_reads_mxnet_files(both):
    base, root, _ = both
    rec = base / "mx" / "d_train.rec"
    report = verify(rec, num_classes=3, echo=lambda *_: None)
    assert report.records == 10
    s = stats(rec, num_thread=1)
    assert s["count"] == 10 and sum(s["histogram"].values()) == 10
    items = {it.index: it for it in lists.read_list(base / "mx" / "d_train.lst")}
    with recordio.RecordReader(rec) as reader:
        for _, _, payload in reader:
            header, image = recordio.unpack(payload)
            assert header.label == items[header.id].label
            img = cv2.imdecode(np.frombuffer(image, np.uint8), 1)
            assert min(img.shape[:2]) == 30  # --resize 30 scales the shorter side


def test_output_does_not_depend_on_thread_count(tmp_path):
    root = tmp_path / "images"
    datagen.image_folder(root, per_class=(9, 8), corrupt=True)
    outputs = []
    for threads in (1, 2, 4):
        prefix = tmp_path / f"t{threads}" / "p"
        prefix.parent.mkdir()
        run(parse_args([str(prefix), str(root), "--list", "--recursive"]), echo=lambda *_: None)
        summaries = run(parse_args([str(prefix), str(root), "--num-thread", str(threads), "--quiet",
                                    "--resize", "20"]), echo=lambda *_: None)
        assert len(summaries[0].skipped) == 2
        outputs.append(((prefix.parent / "p.rec").read_bytes(), (prefix.parent / "p.idx").read_text()))
    assert outputs[0] == outputs[1] == outputs[2]


def test_corrupt_images_are_skipped_and_named_strict_stops(tmp_path, cli):
    root = tmp_path / "images"
    datagen.image_folder(root, per_class=(3, 3), corrupt=True)
    prefix = tmp_path / "p"
    assert cli("im2rec", prefix, root, "--list", "--recursive").exit_code == 0
    res = cli("im2rec", prefix, root, "--num-thread", "2")
    assert res.exit_code == 0
    assert "packed 6 images, skipped 2" in res.output
    assert "skipped class0/broken.jpg: truncated JPEG" in res.output
    assert "skipped class1/broken.png: cannot decode" in res.output
    os.remove(tmp_path / "p.rec")
    os.remove(tmp_path / "p.idx")
    res = run_tool(prefix, root, "--strict")
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "broken" in res.stderr and "--strict" in res.stderr
    assert not (tmp_path / "p.rec").exists() and not (tmp_path / "p.idx").exists()


def test_interrupted_pack_never_looks_whole(tmp_path, monkeypatch):
    root = tmp_path / "images"
    datagen.image_folder(root, per_class=(6, 6))
    prefix = tmp_path / "p"
    run(parse_args([str(prefix), str(root), "--list", "--recursive"]), echo=lambda *_: None)
    real_encode, calls = pack.encode, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_encode(*a, **k)

    monkeypatch.setattr(pack, "encode", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(parse_args([str(prefix), str(root), "--quiet"]), echo=lambda *_: None)
    assert sorted(os.listdir(tmp_path)) == ["images", "p.lst", "p_classes.txt"]  # no .rec, no temp
    monkeypatch.setattr(pack, "encode", real_encode)
    run(parse_args([str(prefix), str(root), "--quiet"]), echo=lambda *_: None)
    whole = (tmp_path / "p.rec").read_bytes()
    calls.clear()
    monkeypatch.setattr(pack, "encode", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(parse_args([str(prefix), str(root), "--quiet", "--encoding", ".png"]), echo=lambda *_: None)
    assert (tmp_path / "p.rec").read_bytes() == whole  # the earlier complete file is untouched


def test_stratified_split_keeps_class_proportions(tmp_path):
    items = [lists.ListItem(i, f"c{c}/{i}.jpg", (float(c),)) for i, c in
             enumerate([0] * 20 + [1] * 10 + [2] * 5)]
    parts = dict(lists.split_items(items, 0.6, 0.2, stratified=True))
    counts = {name: np.bincount([int(it.label) for it in part], minlength=3).tolist()
              for name, part in parts.items()}
    assert counts == {"_test": [4, 2, 1], "_train": [12, 6, 3], "_val": [4, 2, 1]}
    assert sorted(it.index for part in parts.values() for it in part) == list(range(35))
    plain = dict(lists.split_items(items, 0.6, 0.2))  # im2rec's: proportions only overall
    assert [len(plain[k]) for k in ("_test", "_train", "_val")] == [7, 21, 7]


def test_chunks_and_no_shuffle(tmp_path):
    root = tmp_path / "images"
    datagen.image_folder(root, per_class=(5,))
    os.rename(root / "class0", root / "flat")
    for p in (root / "flat").iterdir():
        os.rename(p, root / p.name)
    run(parse_args([str(tmp_path / "c"), str(root), "--list", "--chunks", "2", "--no-shuffle"]),
        echo=lambda *_: None)
    a, b = lists.read_list(tmp_path / "c_0.lst"), lists.read_list(tmp_path / "c_1.lst")
    assert [it.index for it in a + b] == [0, 1, 2, 3, 4] and {it.label for it in a + b} == {0.0}


def test_pack_label_pass_through_and_grey(tmp_path):
    import mxnet as mx

    root = tmp_path / "images"
    paths = datagen.image_folder(root, per_class=(2,))
    rel = [os.path.relpath(p, root) for p in paths]
    (tmp_path / "m.lst").write_text("".join(f"{i}\t{i}.000000\t{i + 0.5:f}\t{r}\n" for i, r in enumerate(rel)))
    run(parse_args([str(tmp_path / "m"), str(root), "--pack-label", "--pass-through", "--quiet"]),
        echo=lambda *_: None)
    r = mx.recordio.MXIndexedRecordIO(str(tmp_path / "m.idx"), str(tmp_path / "m.rec"), "r")
    for i, p in enumerate(paths):
        header, image = mx.recordio.unpack(r.read_idx(i))
        assert list(header.label) == [i, i + 0.5] and header.flag == 2
        assert image == open(p, "rb").read()  # pass-through keeps the file's bytes
    r.close()
    run(parse_args([str(tmp_path / "m"), str(root), "--color", "0", "--encoding", "png", "--quiet"]),
        echo=lambda *_: None)
    with recordio.RecordReader(tmp_path / "m.rec") as reader:
        header, image = recordio.unpack(next(iter(reader))[2])
    assert header.label == 0.0  # without --pack-label only the first label
    assert cv2.imdecode(np.frombuffer(image, np.uint8), -1).ndim == 2


@pytest.mark.parametrize("args, code, message", [
    (["p", "{root}", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["p", "{root}", "--list", "--train-ratio", "1.5"], 2, "--train-ratio must be in (0, 1]"),
    (["p", "{root}", "--list", "--train-ratio", "0.9", "--test-ratio", "0.3"], 2, "must not exceed 1"),
    (["nothing", "{root}"], 2, "no list file matches"),
    (["p", "{tmp}/missing", "--list"], 2, "is not a folder"),
    (["bad", "{root}"], 1, "bad.lst line 2: expected"),
    (["p", "{root}", "--list"], 1, "no images with extensions"),
    (["bad", "{root}", "--encoding", ".gif"], 2, "--encoding must be one of .jpg, .png"),
    (["bad", "{root}", "--quality", "0"], 2, "--quality for .jpg must be 1-100"),
    (["p", "{root}", "--exts", "--list"], 2, "--exts needs at least one extension"),
])
def test_bad_command_lines_give_one_line_and_exit_code(tmp_path, args, code, message):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "bad.lst").write_text("0\t1.000000\ta.jpg\nnot a list line\n")
    args = [a.format(root=root, tmp=tmp_path) for a in args]
    res = run_gluonfuse("im2rec", *args, cwd=tmp_path)
    assert res.returncode == code, res.stderr
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_tool_runs_from_a_checkout_as_an_executable(tmp_path):
    """#!/usr/bin/env python3 with no PYTHONPATH and another working directory."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    assert os.access(TOOL, os.X_OK)
    res = subprocess.run([TOOL, "--help"], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--pack-label" in res.stdout and "--stratified" in res.stdout
    assert "--pack-label" in run_gluonfuse("im2rec", "--help").stdout


def _fake_checkout(tmp_path, venv_python=None):
    """tools/im2rec in a checkout of its own (the package linked in), with a .venv/bin/python that
    runs ``venv_python`` (a command line) when given."""
    root = tmp_path / "checkout"
    (root / "tools").mkdir(parents=True)
    tool = root / "tools" / "im2rec"
    tool.write_bytes(open(TOOL, "rb").read())
    tool.chmod(0o755)
    os.symlink(os.path.join(REPO, "gluonfuse"), root / "gluonfuse")
    if venv_python:
        (root / ".venv" / "bin").mkdir(parents=True)
        python = root / ".venv" / "bin" / "python"
        python.write_text("#!/bin/sh\nexec " + " ".join(venv_python) + ' "$@"\n')
        python.chmod(0o755)
    return root, tool


def _run_with(python, tool, *args, cwd):
    """Run ``tool`` with the interpreter command line ``python`` and no PYTHONPATH. ``[python, "-S"]``
    leaves out the site-packages: no numpy, no cv2, no click, like a system python3."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GLUONFUSE_IM2REC_REEXEC")}
    return subprocess.run([*python, str(tool), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


def test_tool_without_dependencies_uses_the_checkouts_venv(tmp_path):
    root, tool = _fake_checkout(tmp_path, venv_python=[sys.executable])
    res = _run_with([sys.executable, "-S"], tool, "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "--pack-label" in res.stdout and not res.stderr
    images = tmp_path / "images"
    datagen.image_folder(images, per_class=(2, 2))
    res = _run_with([sys.executable, "-S"], tool, tmp_path / "p", images, "--list", "--recursive", cwd=tmp_path)
    assert res.returncode == 0 and (tmp_path / "p.lst").is_file(), res.stderr


def test_tool_without_dependencies_and_without_venv_says_how_to_get_them(tmp_path):
    root, tool = _fake_checkout(tmp_path)
    res = _run_with([sys.executable, "-S"], tool, "--help", cwd=tmp_path)
    assert res.returncode == 1 and not res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "cannot import" in lines[0] and os.path.join(str(root), "tools", "setup-env") in lines[0]


def test_a_venv_lacking_them_too_is_tried_once(tmp_path):
    root, tool = _fake_checkout(tmp_path, venv_python=[sys.executable, "-S"])
    res = _run_with([sys.executable, "-S"], tool, "--help", cwd=tmp_path)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "the checkout's environment" in lines[0] and "setup-env" in lines[0], res.stderr


@pytest.mark.parametrize("python", ["/usr/bin/python3", "/usr/local/bin/python3"])
def test_a_system_python_runs_the_real_checkouts_tool(tmp_path, python):
    """The README's case: the tool started by a system python3 that has none of the dependencies."""
    if not os.access(python, os.X_OK):
        pytest.skip(f"no {python} here")
    if subprocess.run([python, "-c", "import numpy, cv2, click, tqdm"], capture_output=True).returncode == 0:
        pytest.skip(f"{python} has the dependencies")
    if not os.access(os.path.join(REPO, ".venv", "bin", "python"), os.X_OK):
        pytest.skip("this checkout has no .venv")
    res = _run_with([python], TOOL, "--help", cwd=tmp_path)
    assert res.returncode == 0 and "--pack-label" in res.stdout, res.stderr


def test_an_opencv_error_on_one_image_is_a_skip(tmp_path, monkeypatch):
    root = tmp_path / "images"
    datagen.image_folder(root, per_class=(3,))
    run(parse_args([str(tmp_path / "p"), str(root), "--list", "--recursive", "--no-shuffle"]),
        echo=lambda *_: None)
    real = pack.transform

    def picky(img, *a, **k):
        if img.shape[0] % 2:
            raise cv2.error("OpenCV(4.8.1) resize.cpp:1: error: (-215:Assertion failed) odd height")
        return real(img, *a, **k)

    monkeypatch.setattr(pack, "transform", picky)
    heights = [cv2.imread(str(root / it.path)).shape[0] for it in lists.read_list(tmp_path / "p.lst")]
    summary, = run(parse_args([str(tmp_path / "p"), str(root), "--quiet"]), echo=lambda *_: None)
    assert summary.packed == sum(h % 2 == 0 for h in heights)
    assert len(summary.skipped) == sum(h % 2 for h in heights) > 0
    assert "OpenCV cannot process it: OpenCV(4.8.1) resize.cpp:1: error: (-215:Assertion failed) odd height" \
        in summary.skipped[0][1]
