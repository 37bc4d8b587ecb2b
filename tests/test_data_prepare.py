"""`gluonfuse data prepare`: every source format, round trips to the pixel, meta.json, damaged inputs."""
import gzip
import json
import os
import pickle
import tarfile

import numpy as np
import pytest

import datagen
from conftest import run_gluonfuse
from gluonfuse.data.meta import read_meta
from gluonfuse.data.prepare import prepare
from gluonfuse.errors import DataError


def quiet(*_):
    pass


def read_split(out, split):
    """[(label, RGB image)] of out/split.rec in file order, decoded by MXNet's ImageRecordDataset."""
    import mxnet as mx

    ds = mx.gluon.data.vision.ImageRecordDataset(os.path.join(out, f"{split}.rec"))
    return [(ds[i][1], ds[i][0].asnumpy()) for i in range(len(ds))]


def assert_round_trip(out, split, images, labels):
    got = read_split(out, split)
    assert [g[0] for g in got] == [float(v) for v in labels]
    for (_, img), want in zip(got, images):
        np.testing.assert_array_equal(img, want)  # PNG: lossless, RGB order preserved


def assert_meta(meta, out, train_images, train_labels, test_labels, num_classes):
    assert meta == read_meta(out)
    assert meta["num_classes"] == num_classes and len(meta["classes"]) == num_classes
    for split, labels in (("train", train_labels), ("test", test_labels)):
        assert meta["splits"][split] == {"count": len(labels),
                                         "per_class": np.bincount(labels, minlength=num_classes).tolist()}
    px = np.asarray(train_images, np.float64).reshape(-1, 3)
    np.testing.assert_allclose(meta["mean"], px.mean(0), atol=1e-3)
    np.testing.assert_allclose(meta["std"], px.std(0), atol=1e-3)
    for name in ("train", "test"):
        for ext in (".rec", ".idx", ".lst"):
            assert os.path.isfile(os.path.join(out, name + ext))


def test_cifar10_archive_and_folder(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    tr_x, tr_y, te_x, te_y = datagen.cifar10_archive(archive)
    out = tmp_path / "c10"
    meta = prepare("cifar10", src=str(archive), out=str(out), num_thread=2, echo=quiet)
    assert meta["classes"] == [f"class{i}" for i in range(10)]
    assert meta["image_shape"] == [3, 32, 32] and meta["name"] == "cifar10"
    assert list(meta["source"]["files"]) == ["cifar-10-python.tar.gz"]
    assert_meta(meta, out, tr_x, tr_y, te_y, 10)
    assert_round_trip(out, "train", tr_x, tr_y)
    assert_round_trip(out, "test", te_x, te_y)
    # the extracted folder (or the folder holding it) gives the same records
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x")
    for src in (tmp_path / "x", tmp_path / "x" / "cifar-10-batches-py"):
        out2 = tmp_path / ("c10b" + src.name)
        prepare("cifar10", src=str(src), out=str(out2), num_thread=1, echo=quiet)
        assert (out2 / "train.rec").read_bytes() == (out / "train.rec").read_bytes()


@pytest.mark.parametrize("coarse", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, coarse):
    archive = tmp_path / "cifar-100-python.tar.gz"
    tr_x, tr_f, tr_c, te_x, te_f, te_c = datagen.cifar100_archive(archive)
    meta = prepare("cifar100", src=str(archive), out=str(tmp_path / "o"), coarse=coarse, echo=quiet)
    n = 20 if coarse else 100
    assert meta["classes"][:2] == ([f"coarse{i}" for i in range(2)] if coarse else ["fine0", "fine1"])
    assert meta["source"]["labels"] == ("coarse" if coarse else "fine")
    assert_meta(meta, tmp_path / "o", tr_x, tr_c if coarse else tr_f, te_c if coarse else te_f, n)
    assert_round_trip(tmp_path / "o", "test", te_x, te_c if coarse else te_f)


def test_svhn_labels_and_extra(tmp_path):
    data = datagen.svhn_mats(tmp_path / "svhn", n_train=9, n_test=5, n_extra=7)
    meta = prepare("svhn", src=str(tmp_path / "svhn"), out=str(tmp_path / "a"), echo=quiet)
    assert meta["classes"] == [str(d) for d in range(10)]
    assert_meta(meta, tmp_path / "a", data["train"][0], data["train"][1], data["test"][1], 10)
    assert_round_trip(tmp_path / "a", "test", *data["test"])
    assert read_split(tmp_path / "a", "test")[0][0] == 0.0  # the .mat's label 10 is digit 0
    meta = prepare("svhn", src=str(tmp_path / "svhn"), out=str(tmp_path / "b"), with_extra=True, echo=quiet)
    assert meta["splits"]["train"]["count"] == 16 and meta["source"]["with_extra"] is True
    assert sorted(meta["source"]["files"]) == ["extra_32x32.mat", "test_32x32.mat", "train_32x32.mat"]
    assert_round_trip(tmp_path / "b", "train", np.concatenate([data["train"][0], data["extra"][0]]),
                      np.concatenate([data["train"][1], data["extra"][1]]))


def test_mnist_gzipped_or_not(tmp_path):
    data = datagen.mnist_files(tmp_path / "gz", gz=True)
    datagen.mnist_files(tmp_path / "raw", gz=False)
    meta = prepare("mnist", src=str(tmp_path / "gz"), out=str(tmp_path / "fashion"), echo=quiet)
    prepare("mnist", src=str(tmp_path / "raw"), out=str(tmp_path / "m2"), echo=quiet)
    assert meta["image_shape"] == [3, 28, 28] and meta["name"] == "fashion"
    grey3 = lambda x: np.repeat(x[..., None], 3, axis=3)  # noqa: E731
    tr_x, tr_y = data["train"]
    assert_meta(meta, tmp_path / "fashion", grey3(tr_x), tr_y, data["test"][1], int(max(tr_y.max(), data["test"][1].max())) + 1)
    assert_round_trip(tmp_path / "fashion", "train", grey3(tr_x), tr_y)
    assert (tmp_path / "m2" / "train.rec").read_bytes() == (tmp_path / "fashion" / "train.rec").read_bytes()


def test_folder_with_corrupt_images(tmp_path):
    datagen.image_folder(tmp_path / "src", per_class=(10, 5), corrupt=True)
    lines = []
    meta = prepare("folder", src=str(tmp_path / "src"), out=str(tmp_path / "flowers"), size=24,
                   echo=lines.append)
    assert meta["name"] == "flowers" and meta["classes"] == ["class0", "class1"]
    assert meta["image_shape"] == [3, 24, 24]
    counts = {s: meta["splits"][s]["per_class"] for s in ("train", "test")}
    assert counts == {"train": [8, 4], "test": [2, 1]}  # stratified 0.8, corrupt ones skipped
    text = "\n".join(lines)
    assert "class0/broken.jpg: truncated JPEG" in text and "class1/broken.png: cannot decode" in text
    assert len(meta["source"]["tree_sha256"]) == 64
    with pytest.raises(DataError, match="broken"):
        prepare("folder", src=str(tmp_path / "src"), out=str(tmp_path / "strict"), strict=True, echo=quiet)
    assert not os.path.exists(tmp_path / "strict" / "meta.json")


def test_digits_default_dataset_feeds_image_record_iter(tmp_path):
    import mxnet as mx

    meta = prepare("digits", out=str(tmp_path / "digits"), echo=quiet)
    assert meta["splits"]["train"]["count"] == 1438 and meta["splits"]["test"]["count"] == 359
    assert meta["source"]["split"] == {"method": "stratified", "train_ratio": 0.8, "test_ratio": 0.2,
                                       "seed": 0}
    train_ids = {int(line.split("\t")[0]) for line in open(tmp_path / "digits" / "train.lst")}
    test_ids = {int(line.split("\t")[0]) for line in open(tmp_path / "digits" / "test.lst")}
    assert not train_ids & test_ids and len(train_ids | test_ids) == 1797
    mean, std = meta["mean"], meta["std"]
    it = mx.io.ImageRecordIter(
        path_imgrec=str(tmp_path / "digits" / "train.rec"), path_imgidx=str(tmp_path / "digits" / "train.idx"),
        data_shape=(3, 32, 32), batch_size=64, shuffle=True, pad=4, fill_value=int(round(mean[0])),
        rand_crop=True, rand_mirror=True, mean_r=mean[0], mean_g=mean[1], mean_b=mean[2],
        std_r=std[0], std_g=std[1], std_b=std[2], preprocess_threads=2)
    seen = 0
    for batch in it:
        seen += batch.data[0].shape[0] - batch.pad
        assert set(np.unique(batch.label[0].asnumpy())) <= set(range(10))
    assert seen == 1438
    data = batch.data[0].asnumpy()
    assert abs(data.mean()) < 0.5 and 0.5 < data.std() < 1.5  # normalised by meta's mean/std


def test_interrupted_prepare_leaves_no_meta(tmp_path, monkeypatch):
    from gluonfuse.data import prepare as prep

    out = tmp_path / "d"
    prepare("digits", out=str(out), echo=quiet)
    assert read_meta(out)

    def boom(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "write_list", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare("digits", out=str(out), overwrite=True, echo=quiet)
    with pytest.raises(DataError, match="did not finish"):
        read_meta(out)


def test_damaged_sources_are_data_errors(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    datagen.cifar10_archive(archive)
    cut = tmp_path / "cut" / "cifar-10-python.tar.gz"
    cut.parent.mkdir()
    cut.write_bytes(archive.read_bytes()[:3000])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        prepare("cifar10", src=str(cut), out=str(tmp_path / "o1"), echo=quiet)
    # a pickle that would run code is refused
    evil = tmp_path / "evil" / "cifar-10-batches-py"
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "evil")
    (evil / "test_batch").write_bytes(pickle.dumps({"data": os.system}))
    with pytest.raises(DataError, match="refusing to load posix.system"):
        prepare("cifar10", src=str(evil), out=str(tmp_path / "o2"), echo=quiet)
    # an idx file cut short names the offsets
    datagen.mnist_files(tmp_path / "mn", gz=True)
    p = tmp_path / "mn" / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:500]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: truncated: .* from byte 16, the data ends at byte 500"):
        prepare("mnist", src=str(tmp_path / "mn"), out=str(tmp_path / "o3"), echo=quiet)
    datagen.svhn_mats(tmp_path / "sv")
    (tmp_path / "sv" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 but not really")
    with pytest.raises(DataError, match="test_32x32.mat: not a MATLAB v5 .mat file"):
        prepare("svhn", src=str(tmp_path / "sv"), out=str(tmp_path / "o4"), echo=quiet)


@pytest.mark.parametrize("args, code, message", [
    (["data", "prepare", "cifar"], 2, "unknown dataset 'cifar'"),
    (["data", "prepare", "cifar10"], 2, "cifar10 needs --src"),
    (["data", "prepare", "digits", "--coarse"], 2, "--coarse applies to cifar100 only"),
    (["data", "prepare", "svhn", "--src", "{tmp}"], 1, "missing train_32x32.mat, test_32x32.mat"),
    (["data", "prepare", "digits", "--out", "{tmp}/done"], 2, "already holds a prepared dataset"),
])
def test_prepare_cli_bad_input(tmp_path, args, code, message):
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "meta.json").write_text("{}")
    res = run_gluonfuse(*[a.format(tmp=tmp_path) for a in args])
    assert res.returncode == code, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_prepare_cli_and_read_meta_errors(tmp_path, cli):
    res = cli("data", "prepare", "digits", "--out", tmp_path / "dg", "--quiet")
    assert res.exit_code == 0, res.output
    assert "prepared digits: 1438 train / 359 test images, 10 classes" in res.output
    meta = tmp_path / "dg" / "meta.json"
    meta.write_text(meta.read_text().replace('"num_classes": 10', '"num_classes": 11'))
    with pytest.raises(DataError, match="classes must list 11 names"):
        read_meta(tmp_path / "dg")
    good = json.loads(meta.read_text().replace('"num_classes": 11', '"num_classes": 10'))
    good["splits"]["train"]["per_class"] = [str(c) for c in good["splits"]["train"]["per_class"]]
    meta.write_text(json.dumps(good))
    with pytest.raises(DataError, match="splits.train.per_class must list 10 counts that add up to 1438"):
        read_meta(tmp_path / "dg")
    meta.write_text("{not json")
    with pytest.raises(DataError, match="cannot read dataset metadata"):
        read_meta(tmp_path / "dg")
    with pytest.raises(DataError, match="not found"):
        read_meta(tmp_path)


def test_class_names_file_names_the_classes_of_meta_json(tmp_path):
    from conftest import run_gluonfuse

    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"digit-{w}" for w in "zero one two three four five six seven eight nine".split())
                     + "\n\n")
    out = tmp_path / "digits"
    proc = run_gluonfuse("data", "prepare", "digits", "--out", out, "--quiet", "--class-names", names)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"][0] == "digit-zero" and meta["classes"][9] == "digit-nine" and meta["num_classes"] == 10
    names.write_text("a\nb\n")
    proc = run_gluonfuse("data", "prepare", "digits", "--out", out, "--quiet", "--overwrite", "--class-names", names)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "has 2 names but the dataset has 10 classes" in proc.stderr
    names.write_text("a\na\n")
    proc = run_gluonfuse("data", "prepare", "digits", "--out", tmp_path / "never", "--class-names", names)
    assert proc.returncode == 2 and "repeats 'a'" in proc.stderr and not (tmp_path / "never").exists()
