"""Small datasets in the real source formats, generated for the data tests.

CIFAR python batches (pickled dicts in a tar.gz, as the official archive lays them out), SVHN .mat
files written by scipy, MNIST idx files (gzipped or raw), and folders of PNG/JPEG images. Images are
smooth random patterns (gradients + rectangles) so that JPEG behaves as on photos.
"""
import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np


def pattern(rng, h, w, c=3):
    """A smooth random uint8 image (H, W, C)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, c), np.float32)
    for ch in range(c):
        a, b, d = rng.uniform(-2, 2, 3)
        img[:, :, ch] = 128 + 60 * np.sin(a * x / w * 3 + b * y / h * 3 + d)
    for _ in range(3):
        y0, x0 = rng.randint(0, h - 1), rng.randint(0, w - 1)
        img[y0:y0 + rng.randint(1, h // 2 + 2), x0:x0 + rng.randint(1, w // 2 + 2)] = rng.randint(0, 256, c)
    return np.clip(img, 0, 255).astype(np.uint8)


def images(n, h=32, w=32, seed=0):
    rng = np.random.RandomState(seed)
    return np.stack([pattern(rng, h, w) for _ in range(n)])


# ---------------------------------------------------------------------------------------- CIFAR
def _batch_bytes(imgs, labels, labels_key, extra=None):
    d = {"batch_label": "generated", labels_key: [int(v) for v in labels],
         "data": imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1),
         "filenames": [f"img_{i}.png" for i in range(len(imgs))]}
    d.update(extra or {})
    return pickle.dumps(d, protocol=2)


def cifar10_archive(path, per_batch=6, n_test=8, seed=0):
    """A cifar-10-python.tar.gz with 5 training batches; returns (train imgs, labels, test imgs, labels)."""
    rng = np.random.RandomState(seed)
    tr_x, tr_y = images(5 * per_batch, seed=seed), rng.randint(0, 10, 5 * per_batch)
    te_x, te_y = images(n_test, seed=seed + 1), rng.randint(0, 10, n_test)
    members = {f"data_batch_{i + 1}": _batch_bytes(tr_x[i * per_batch:(i + 1) * per_batch],
                                                   tr_y[i * per_batch:(i + 1) * per_batch], "labels")
               for i in range(5)}
    members["test_batch"] = _batch_bytes(te_x, te_y, "labels")
    members["batches.meta"] = pickle.dumps({"label_names": [f"class{i}" for i in range(10)],
                                            "num_cases_per_batch": per_batch}, protocol=2)
    _tar(path, "cifar-10-batches-py", members)
    return tr_x, tr_y, te_x, te_y


def cifar100_archive(path, n_train=12, n_test=6, seed=0):
    rng = np.random.RandomState(seed)
    tr_x, te_x = images(n_train, seed=seed), images(n_test, seed=seed + 1)
    tr_f, te_f = rng.randint(0, 100, n_train), rng.randint(0, 100, n_test)
    tr_c, te_c = tr_f // 5, te_f // 5
    members = {
        "train": _batch_bytes(tr_x, tr_f, "fine_labels", {"coarse_labels": [int(v) for v in tr_c]}),
        "test": _batch_bytes(te_x, te_f, "fine_labels", {"coarse_labels": [int(v) for v in te_c]}),
        "meta": pickle.dumps({"fine_label_names": [f"fine{i}" for i in range(100)],
                              "coarse_label_names": [f"coarse{i}" for i in range(20)]}, protocol=2),
    }
    _tar(path, "cifar-100-python", members)
    return tr_x, tr_f, tr_c, te_x, te_f, te_c


def _tar(path, folder, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# ----------------------------------------------------------------------------------------- SVHN
def svhn_mats(folder, n_train=10, n_test=6, n_extra=0, seed=0):
    """SVHN cropped-digit .mat files (X: 32x32x3xN, y: Nx1 with 10 for digit 0)."""
    import scipy.io

    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    out = {}
    for k, (name, n) in enumerate((("train", n_train), ("test", n_test), ("extra", n_extra))):
        if not n:
            continue
        x = images(n, seed=seed + k)
        y = rng.randint(1, 11, (n, 1)).astype(np.uint8)
        y[0] = 10  # always one zero digit
        scipy.io.savemat(os.path.join(folder, f"{name}_32x32.mat"), {"X": x.transpose(1, 2, 3, 0), "y": y})
        out[name] = (x, y.ravel() % 10)
    return out


# ---------------------------------------------------------------------------------------- MNIST
def idx_bytes(arr):
    return struct.pack(">BBBB", 0, 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def mnist_files(folder, n_train=10, n_test=5, gz=True, seed=0):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
        y = rng.randint(0, 10, n).astype(np.uint8)
        for kind, arr, dim in (("images", x, 3), ("labels", y, 1)):
            name = f"{prefix}-{kind}-idx{dim}-ubyte" + (".gz" if gz else "")
            data = idx_bytes(arr)
            with open(os.path.join(folder, name), "wb") as f:
                f.write(gzip.compress(data) if gz else data)
        out[split] = (x, y)
    return out


# ---------------------------------------------------------------------------------------- folders
def image_folder(root, per_class=(4, 5), size=(40, 48), seed=0, corrupt=False):
    """root/classK/*.png|jpg (alternating); with ``corrupt``, add a truncated class0/broken.jpg and a
    class1/broken.png that is not an image."""
    import cv2

    rng = np.random.RandomState(seed)
    paths = []
    for c, n in enumerate(per_class):
        d = os.path.join(root, f"class{c}")
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            h, w = size[0] + rng.randint(0, 9), size[1] + rng.randint(0, 9)
            p = os.path.join(d, f"img{i:03d}" + (".png" if i % 2 else ".jpg"))
            cv2.imwrite(p, pattern(rng, h, w))
            paths.append(p)
    if corrupt:
        ok, jpg = cv2.imencode(".jpg", pattern(rng, 64, 64))
        with open(os.path.join(root, "class0", "broken.jpg"), "wb") as f:
            f.write(jpg.tobytes()[:len(jpg) // 2])  # a download cut in half
        with open(os.path.join(root, "class1", "broken.png"), "wb") as f:
            f.write(b"this is not an image at all")
    return paths
