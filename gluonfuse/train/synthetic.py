"""A tiny synthetic dataset in the prepared-dataset layout, for tests, benchmarks and smoke runs.

Class ``k`` is a coloured stripe pattern (colour, stripe direction and frequency depend on ``k``)
with random phase, brightness and noise, so a small network learns it within an epoch or two. The
directory follows the prepared-dataset contract: ``train``/``test`` ``.rec``/``.idx``/``.lst`` and
``meta.json`` (records are IRHeader + BGR PNG from ``cv2.imencode``, so MXNet decodes RGB).
"""
import json
import os

import numpy as np

from gluonfuse.io import atomic_path


def pattern(k, classes, size, rng):
    """One RGB uint8 image of class ``k``."""
    hue = np.array([(k * 0.61) % 1.0, (k * 0.37 + 0.3) % 1.0, (k * 0.83 + 0.6) % 1.0])
    colour = 60 + 180 * hue
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.pi * (k % 4) / 4
    freq = 2 * np.pi * (1 + k // 4) / size * 2
    phase = rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    img = wave[..., None] * colour[None, None, :] * rng.uniform(0.8, 1.2)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_split(out_dir, split, images, labels):
    import cv2
    import mxnet as mx

    rec_path, idx_path = os.path.join(out_dir, f"{split}.rec"), os.path.join(out_dir, f"{split}.idx")
    with atomic_path(rec_path) as rec_tmp, atomic_path(idx_path) as idx_tmp:
        writer = mx.recordio.MXIndexedRecordIO(idx_tmp, rec_tmp, "w")
        for i, (img, label) in enumerate(zip(images, labels)):
            ok, buf = cv2.imencode(".png", img[:, :, ::-1])  # RGB -> BGR: MXNet decodes to RGB
            assert ok
            header = mx.recordio.IRHeader(0, float(label), i, 0)
            writer.write_idx(i, mx.recordio.pack(header, buf.tobytes()))
        writer.close()
    with atomic_path(os.path.join(out_dir, f"{split}.lst")) as tmp:
        with open(tmp, "w") as f:
            for i, label in enumerate(labels):
                f.write(f"{i}\t{float(label):.6f}\t{split}/{i:06d}.png\n")


def write_pattern_dataset(out_dir, classes=10, train_per_class=30, test_per_class=10, size=32, seed=0,
                          name="patterns"):
    """Write the dataset into ``out_dir``; returns its meta dict. Test counts are exact per class."""
    rng = np.random.RandomState(seed)
    os.makedirs(out_dir, exist_ok=True)
    splits, train_images = {}, None
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(classes), per_class)
        rng.shuffle(labels)
        images = [pattern(int(k), classes, size, rng) for k in labels]
        _write_split(out_dir, split, images, labels)
        splits[split] = {"count": int(len(labels)), "per_class": [int(per_class)] * classes}
        if split == "train":
            train_images = np.stack(images).astype(np.float64)
    meta = {
        "name": name, "num_classes": classes, "classes": [f"class{k}" for k in range(classes)],
        "image_shape": [3, size, size],
        "mean": [float(v) for v in train_images.mean(axis=(0, 1, 2))],
        "std": [float(v) for v in train_images.std(axis=(0, 1, 2))],
        "splits": splits, "source": {"files": {}, "generator": "gluonfuse.train.synthetic"},
        "gluonfuse_version": __import__("gluonfuse").__version__,
    }
    with atomic_path(os.path.join(out_dir, "meta.json")) as tmp:
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2)
    return meta
