"""Datasets as MXNet RecordIO: list making, packing, converters, checks, presets.

- ``recordio``: the ``.rec``/``.idx`` format written and read in plain Python (byte-identical to MXNet's).
- ``lists``: im2rec's ``.lst`` files: walking folders, labels, train/test/val splits (optionally stratified).
- ``pack``: decoding, cropping, resizing and encoding images in threads; ordered, atomic packing.
- ``im2rec``: the command line shared by ``tools/im2rec`` and ``gluonfuse im2rec``.
- ``sources`` + ``prepare``: CIFAR-10/100, SVHN, MNIST-format, image folders and scikit-learn's digits
  into a prepared dataset directory (``train``/``test`` ``.rec``/``.idx``/``.lst`` + ``meta.json``);
  ``sources`` reads each format into a ``dataset.Dataset``, ``prepare`` packs it (imports go that way);
  ``safepickle`` loads CIFAR's pickles without trusting them, ``matfile`` reads SVHN's MATLAB v5 files.
- ``fetch``: checked, resumable downloads of the official archives.
- ``check``: ``verify`` and ``stats`` of a ``.rec``, and ``check_record_file``, the cheap check made before
  MXNet's C++ reader opens one.
- ``meta``: ``meta.json`` (``read_meta``); ``presets``: the papers' mean/std per dataset.

Nothing here imports mxnet or ``gluonfuse.models``.
"""
