"""Image lists (``.lst``) as MXNet's im2rec makes them: finding images, labelling folders, splitting.

A ``.lst`` line is ``index<TAB>label[<TAB>label...]<TAB>relative/path`` with labels printed as ``%f``.
Without ``stratified`` the lists are byte-for-byte those of ``mxnet/tools/im2rec.py --list`` (same walk
order, the same ``random.seed(100)`` shuffle, the same chunk and ratio arithmetic), so existing recipes
keep their splits. Two additions: the class-to-label map is written next to the list
(``<prefix>_classes.txt``: ``label<TAB>folder`` per line) instead of only printed, and a stratified
split keeps every class in the train/test proportions.
"""
import dataclasses
import os
import random
from typing import List, Tuple

from gluonfuse.errors import DataError
from gluonfuse.io import atomic_path, text_lines

DEFAULT_EXTS = (".jpeg", ".jpg", ".png")


@dataclasses.dataclass(frozen=True)
class ListItem:
    """One line of a ``.lst`` file."""

    index: int
    path: str  # relative to the image root
    labels: Tuple[float, ...]

    @property
    def label(self):
        return self.labels[0]


def normalize_exts(exts):
    """``['JPG', '.png']`` -> ``('.jpg', '.png')``; comma-separated strings are split."""
    out = []
    for ext in exts:
        for part in str(ext).split(","):
            part = part.strip().lower()
            if not part:
                continue
            out.append(part if part.startswith(".") else "." + part)
    if not out:
        raise ValueError("--exts needs at least one extension, e.g. --exts .jpg .png")
    return tuple(out)


def list_images(root, recursive=False, exts=DEFAULT_EXTS):
    """All images under ``root``, as im2rec lists them: ``(items, classes)``.

    Recursive: every folder that holds an image is a class, labelled in walk order (sorted, top
    down; the root itself is a class when it holds images); ``classes[label]`` is the folder relative
    to ``root``. Not recursive: the images directly in ``root``, all labelled 0, ``classes == []``.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"image root {root!r} is not a folder")
    exts = normalize_exts(exts)
    items: List[ListItem] = []
    classes: List[str] = []
    if recursive:
        label_of = {}
        for path, dirs, files in os.walk(root, followlinks=True):
            dirs.sort()
            for fname in sorted(files):
                fpath = os.path.join(path, fname)
                if os.path.splitext(fname)[1].lower() in exts and os.path.isfile(fpath):
                    if path not in label_of:
                        label_of[path] = len(label_of)
                        classes.append(os.path.relpath(path, root))
                    items.append(ListItem(len(items), os.path.relpath(fpath, root),
                                          (float(label_of[path]),)))
    else:
        for fname in sorted(os.listdir(root)):
            fpath = os.path.join(root, fname)
            if os.path.splitext(fname)[1].lower() in exts and os.path.isfile(fpath):
                items.append(ListItem(len(items), fname, (0.0,)))
    return items, classes


def check_ratios(train_ratio, test_ratio):
    if not 0.0 < train_ratio <= 1.0:
        raise ValueError(f"--train-ratio must be in (0, 1], got {train_ratio}")
    if not 0.0 <= test_ratio < 1.0:
        raise ValueError(f"--test-ratio must be in [0, 1), got {test_ratio}")
    if train_ratio + test_ratio > 1.0 + 1e-9:
        raise ValueError(f"--train-ratio + --test-ratio must not exceed 1 "
                         f"(got {train_ratio} + {test_ratio})")


def _stratified(chunk, train_ratio, test_ratio):
    """(train, test, val) of ``chunk`` with each label split in the given proportions, order kept."""
    by_label = {}
    for item in chunk:
        by_label.setdefault(item.label, []).append(item)
    part_of = {}
    for members in by_label.values():
        n = len(members)
        n_test = int(n * test_ratio + 0.5)
        n_train = n - n_test if train_ratio + test_ratio >= 1.0 - 1e-9 else int(n * train_ratio + 0.5)
        n_train = min(n_train, n - n_test)
        for k, item in enumerate(members):
            part_of[id(item)] = "test" if k < n_test else "train" if k < n_test + n_train else "val"
    return tuple([it for it in chunk if part_of[id(it)] == name] for name in ("train", "test", "val"))


def split_items(items, train_ratio=1.0, test_ratio=0.0, chunks=1, shuffle=True, stratified=False,
                seed=100):
    """Split ``items`` into named lists: ``[(suffix, items), ...]``, suffix like ``'_0_train'``.

    Same arithmetic as MXNet's im2rec (including its use of the nominal chunk size for the ratios);
    ``stratified`` splits each label separately instead (rounding to the nearest image).
    """
    check_ratios(train_ratio, test_ratio)
    if chunks < 1:
        raise ValueError(f"--chunks must be at least 1, got {chunks}")
    items = list(items)
    if shuffle:
        random.Random(seed).shuffle(items)
    chunk_size = (len(items) + chunks - 1) // chunks
    out = []
    for c in range(chunks):
        chunk = items[c * chunk_size:(c + 1) * chunk_size]
        tag = f"_{c}" if chunks > 1 else ""
        if train_ratio == 1.0:
            out.append((tag, chunk))
            continue
        if stratified:
            train, test, val = _stratified(chunk, train_ratio, test_ratio)
        else:
            sep, sep_test = int(chunk_size * train_ratio), int(chunk_size * test_ratio)
            test, train, val = chunk[:sep_test], chunk[sep_test:sep_test + sep], chunk[sep_test + sep:]
        if test_ratio:
            out.append((tag + "_test", test))
        if train_ratio + test_ratio < 1.0:
            out.append((tag + "_val", val))
        out.append((tag + "_train", train))
    return out


def format_item(item):
    return "%d\t" % item.index + "".join("%f\t" % v for v in item.labels) + item.path + "\n"


def write_list(path, items):
    """Write a ``.lst`` file atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.writelines(format_item(it) for it in items)


def read_list(path):
    """Read a ``.lst`` file; a malformed line is a DataError naming the file and line."""
    path = os.fspath(path)
    items = []
    for number, line in text_lines(path, "list file"):
        fields = [x.strip() for x in line.rstrip("\n").split("\t")]
        try:
            if len(fields) < 3:
                raise ValueError
            items.append(ListItem(int(fields[0]), fields[-1], tuple(float(x) for x in fields[1:-1])))
        except ValueError:
            raise DataError(f"{path} line {number}: expected 'index<TAB>label<TAB>path', got "
                            f"{line.strip()[:80]!r}") from None
    return items


def class_map_path(prefix):
    return os.fspath(prefix) + "_classes.txt"


def write_class_map(path, classes):
    """``label<TAB>class`` per line, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.writelines(f"{label}\t{name}\n" for label, name in enumerate(classes))


def read_class_map(path):
    """The class names of a ``_classes.txt`` file, indexed by label."""
    names = {}
    for number, line in text_lines(path, "class map"):
        label, _, name = line.rstrip("\n").partition("\t")
        try:
            names[int(label)] = name
        except ValueError:
            raise DataError(f"{path} line {number}: expected 'label<TAB>class'") from None
    return [names[k] for k in sorted(names)]


def make_lists(prefix, root, recursive=False, exts=DEFAULT_EXTS, train_ratio=1.0, test_ratio=0.0,
               chunks=1, shuffle=True, stratified=False, seed=100):
    """im2rec's list mode: walk ``root``, split, write ``<prefix>[_chunk][_train|_test|_val].lst``
    and (recursive) the class map. Returns ``(list paths, class map path or None, items, classes)``."""
    prefix = os.fspath(prefix)
    check_ratios(train_ratio, test_ratio)  # before walking a large tree
    items, classes = list_images(root, recursive, exts)
    if not items:
        raise DataError(f"no images with extensions {' '.join(normalize_exts(exts))} in {root}"
                        + ("" if recursive else " (add --recursive to walk sub-folders)"))
    written = []
    for suffix, part in split_items(items, train_ratio, test_ratio, chunks, shuffle, stratified, seed):
        write_list(prefix + suffix + ".lst", part)
        written.append(prefix + suffix + ".lst")
    map_path = None
    if recursive:
        map_path = class_map_path(prefix)
        write_class_map(map_path, classes)
    return written, map_path, items, classes
