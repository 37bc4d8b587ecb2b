"""Input pipelines over a prepared dataset directory: MXNet's C++ ``ImageRecordIter`` plus exact padding.

The directory is the one ``gluonfuse data prepare`` writes (``train.rec``/``.idx``, ``test.rec``/``.idx``,
``meta.json``). The C++ iterator decodes, mirrors and normalises (``(x - mean) / std`` per channel,
0..255 scale) in its own threads with prefetch.

Augmentation types (docs/recipes.md#augmentation):
  * 0 - none;
  * 1 ("+") - pad 4, random 32x32 crop, random mirror. The padding must be the mean colour, i.e.
    exactly 0 after normalising. ImageRecordIter's ``fill_value`` is one grey level for all three
    channels in mxnet 1.9.1 (the authors' per-channel ``fill_value_r/g/b`` no longer exist), so no
    value makes all channels 0; instead the normalised batch is zero-padded and cropped here
    (:class:`PadCrop`, numpy, about a millisecond per batch of 64), with a random
    stream seeded per epoch so a resumed run crops the same way;
  * 2 ("++", ImageNet) - random scale (short side 256..480 when images are stored at 480), aspect
    0.75..1.25, HSL jitter (36, 50, 50), mirror, random crop, all in C++.

Two MXNet traps handled here: ``batch.pad`` marks the padded tail of the last batch (evaluation must
not count it), and after ``reset()`` a ``round_batch`` iterator starts the next pass *after* the
samples it borrowed for padding, so every pass gets a fresh iterator (:func:`record_iter`).

A third: ``ImageRecordIter`` does not report a damaged file, it takes the process down (a ``.rec``
cut short under an intact ``.idx`` is a segmentation fault). :func:`record_iter` and
:func:`count_records` therefore check every file with :func:`gluonfuse.data.check.check_split_file`
first (the index and two record headers; a DataError names the file and the byte offset).
"""
import os

import numpy as np

from gluonfuse.errors import DataError

SPLITS = ("train", "test")


def check_dataset_dir(data_dir, splits=SPLITS):
    """Raise DataError naming the first missing or damaged file of the prepared layout (the cheap
    checks of :func:`gluonfuse.data.check.check_split_file`, before a run directory exists)."""
    from gluonfuse.data.check import check_split_file

    if not os.path.isdir(data_dir):
        raise DataError(f"dataset directory not found: {data_dir} (prepare it with "
                        f"'gluonfuse data prepare NAME --out {data_dir}', or pass --data-dir)")
    for split in splits:
        path = os.path.join(data_dir, f"{split}.rec")
        if not os.path.isfile(path):
            raise DataError(f"{path} not found: {data_dir} is not a prepared dataset directory "
                            "(it needs train.rec, test.rec and meta.json)")
    if not os.path.isfile(os.path.join(data_dir, "meta.json")):
        raise DataError(f"{os.path.join(data_dir, 'meta.json')} not found")
    for split in splits:
        check_split_file(os.path.join(data_dir, f"{split}.rec"))


def ensure_dataset(dataset, data_dir, echo=print):
    """Make sure ``data_dir`` holds a prepared dataset; prepare the embedded ``digits`` on the fly.

    Only ``digits`` ships inside the package (no download), so only it is prepared automatically.
    """
    if dataset == "digits" and not os.path.exists(os.path.join(data_dir, "meta.json")):
        from gluonfuse.data.prepare import prepare

        echo(f"Preparing the embedded 'digits' dataset into {data_dir} ...")
        prepare("digits", out=data_dir, echo=echo)
    check_dataset_dir(data_dir)


def _preset(dataset):
    from gluonfuse.data.presets import PRESETS

    return PRESETS.get(dataset)


def _three(values, what, source):
    values = [float(v) for v in values]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise DataError(f"{source}: {what} must have 1 or 3 channels, got {values}")
    return values


def normalisation(dataset, meta, meta_path="meta.json"):
    """Per-channel (mean, std) on the 0..255 scale: the dataset's preset (docs/recipes.md#normalisation), else meta.json's."""
    preset = _preset(dataset)
    if preset is not None:
        return _three(preset["mean"], "mean", "presets"), _three(preset["std"], "std", "presets")
    if "mean" not in meta or "std" not in meta:
        raise DataError(f"{meta_path}: no 'mean'/'std' (training-set statistics) and no preset for "
                        f"{dataset!r}; re-run 'gluonfuse data prepare'")
    return _three(meta["mean"], "mean", meta_path), _three(meta["std"], "std", meta_path)


def record_iter(rec_path, batch_size, input_shape, mean, std, aug_type=0, shuffle=False, seed=0,
                threads=2, stored_size=None, num_parts=1, part_index=0):
    """A fresh ImageRecordIter over ``rec_path`` (one pass; make a new one per pass), opened only
    after :func:`gluonfuse.data.check.check_split_file` passed (a damaged file is a DataError naming
    the byte offset instead of a crash inside MXNet).

    ``stored_size``: the side of the stored images when it differs from the network input; the
    images are then resized (short side) to the input size before cropping (aug types 0 and 1).
    ``num_parts``/``part_index``: read only that part of the file (a distributed worker's shard,
    see :func:`gluonfuse.train.dist.shard_range`; needs the ``.idx``), shuffled within the part.
    """
    from gluonfuse.data.check import check_split_file
    from gluonfuse.data.recordio import idx_path_for

    check_split_file(rec_path)  # MXNet's reader crashes the process on a damaged file
    import mxnet as mx

    c, h, w = input_shape

    idx = idx_path_for(rec_path)
    kwargs = dict(path_imgrec=rec_path, data_shape=(c, h, w), batch_size=batch_size, shuffle=shuffle,
                  seed=int(seed) % (2 ** 31), preprocess_threads=max(1, threads), verbose=False,
                  round_batch=True, prefetch_buffer=4,
                  mean_r=mean[0], mean_g=mean[1], mean_b=mean[2], std_r=std[0], std_g=std[1], std_b=std[2])
    if os.path.isfile(idx):
        kwargs["path_imgidx"] = idx
    if num_parts > 1:
        if not os.path.isfile(idx):
            raise DataError(f"{idx} not found: a distributed job splits {rec_path} between its workers by "
                            "record, which needs the index (gluonfuse data prepare and im2rec write it)")
        kwargs.update(num_parts=num_parts, part_index=part_index)
    if aug_type == 2:
        # "++" (docs/recipes.md#augmentation): images stored with short side 480 -> random scale to 256..480
        kwargs.update(rand_crop=True, rand_mirror=True, min_random_scale=256 / 480, max_random_scale=1.0,
                      max_aspect_ratio=0.25, random_h=36, random_s=50, random_l=50, inter_method=9)
    else:
        if stored_size and stored_size != min(h, w):
            kwargs["resize"] = min(h, w)
        kwargs["rand_mirror"] = aug_type == 1
    try:
        it = mx.io.ImageRecordIter(**kwargs)
    except mx.base.MXNetError as exc:
        raise DataError(f"cannot read {rec_path}: {str(exc).splitlines()[0]}") from None
    if aug_type == 1:
        it = PadCrop(it, pad=4, seed=seed)
    return it


class PadCrop:
    """Wrap a normalised batch iterator: zero-pad by ``pad`` and crop back at a random offset per image.

    Zero is the mean colour after normalisation ("+", docs/recipes.md#augmentation). Yields ``mx.io.DataBatch`` with
    the same ``pad`` field as the wrapped iterator.
    """

    def __init__(self, it, pad, seed):
        self.it, self.pad = it, pad
        self.rng = np.random.RandomState(int(seed) % (2 ** 32))
        self.batch_size = it.batch_size
        self.provide_data, self.provide_label = it.provide_data, it.provide_label

    def __iter__(self):
        return self

    def __next__(self):
        import mxnet as mx

        batch = next(self.it)
        x = batch.data[0].asnumpy()
        n, c, h, w = x.shape
        p = self.pad
        padded = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=x.dtype)
        padded[:, :, p:p + h, p:p + w] = x
        oy = self.rng.randint(0, 2 * p + 1, size=n)
        ox = self.rng.randint(0, 2 * p + 1, size=n)
        out = np.empty_like(x)
        for i in range(n):  # slice copies: much faster than one fancy-indexed gather
            out[i] = padded[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        return mx.io.DataBatch([mx.nd.array(out, dtype=x.dtype)], batch.label, pad=batch.pad)

    next = __next__


def count_records(rec_path):
    """Number of records in a .rec, after the checks of :func:`gluonfuse.data.check.check_split_file`
    (from its .idx, else by walking the record headers; DataError on damage)."""
    from gluonfuse.data.check import check_split_file

    return check_split_file(rec_path)
