"""A tiny synthetic dataset in the prepared-dataset layout, for tests, benchmarks and smoke runs.

Class ``k`` is a coloured stripe pattern (colour, stripe direction and frequency depend on ``k``)
with random phase, brightness and noise, so a small network learns it within an epoch or two. The
directory follows the prepared-dataset contract: ``train``/``test`` ``.rec``/``.idx``/``.lst`` and
``meta.json`` (records are IRHeader + BGR PNG from ``cv2.imencode``, so MXNet decodes RGB).
"""
import numpy as np


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


def write_pattern_dataset(out_dir, classes=10, train_per_class=30, test_per_class=10, size=32, seed=0,
                          name="patterns"):
    """Write the dataset into ``out_dir`` with the data library; returns its meta dict.

    Test counts are exact per class; labels are shuffled within each split.
    """
    from gluonfuse.data.prepare import Dataset, write_dataset

    rng = np.random.RandomState(seed)
    splits = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(classes), per_class)
        rng.shuffle(labels)
        images = [pattern(int(k), classes, size, rng) for k in labels]
        splits[split] = (list(range(len(labels))),
                         lambda i, images=images, labels=labels, split=split:
                         (images[i], int(labels[i]), f"{split}/{i:06d}.png"))
    ds = Dataset(name, [f"class{k}" for k in range(classes)], splits,
                 {"files": {}, "generator": "gluonfuse.train.synthetic"})
    return write_dataset(ds, out_dir, num_thread=1, progress=False, echo=lambda *args: None)
