"""Classify image files with a trained run: top-k class names and probabilities.

Any file OpenCV reads (PNG, JPEG, BMP, TIFF, ...; any size, grey or colour) is converted to RGB,
resized to the network's input size and normalised exactly as in training (the run's mean/std).
For multi-output networks (``ensemble``) the probabilities are the members' average.
"""
import os

import numpy as np

from gluonfuse.errors import ArgumentError, DataError


def load_image(path, input_shape):
    """``path`` as a (C, H, W) float32 RGB array at the network's input size (0..255 scale)."""
    import cv2

    if not os.path.isfile(path):
        raise DataError(f"image not found: {path}")
    img = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR, 3 channels even for grey files
    if img is None:
        raise DataError(f"{path}: OpenCV cannot read this file as an image")
    _, h, w = input_shape
    shrink = img.shape[0] > h or img.shape[1] > w
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return img[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)


def image_batch(images, mean, std, input_shape):
    """The image files as one normalised (N, C, H, W) float32 batch."""
    mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(std, np.float32).reshape(3, 1, 1)
    return np.stack([(load_image(p, input_shape) - mean) / std for p in images])


def classify(net, batch, images, class_names, top_k=5):
    """[{'image': path, 'top': [(class name, probability), ...]}, ...]: ``net`` on ``batch`` (an NDArray
    of ``images``, in order)."""
    import mxnet as mx

    from gluonfuse.train.metrics import as_outputs

    with mx.autograd.predict_mode():
        outs = as_outputs(net(batch))
    probs = np.mean([mx.nd.softmax(o, axis=-1).asnumpy() for o in outs], axis=0)
    k = min(top_k, probs.shape[1])
    results = []
    for path, p in zip(images, probs):
        order = np.argsort(-p)[:k]
        names = [class_names[i] if class_names and i < len(class_names) else str(i) for i in order]
        results.append({"image": path, "top": [(n, float(p[i])) for n, i in zip(names, order)]})
    return results


def predict_run(run_dir, images, which="best", top_k=5, prepare=None):
    """Classify ``images`` with a run's ``which`` weights; class names from its dataset_meta.json.

    ``prepare(net, batch)``: the block to run instead of the network (``gluonfuse predict`` passes
    the fused graph or the int8 model, :mod:`gluonfuse.deploy.infer`); default the network itself.
    """
    import mxnet as mx

    from gluonfuse.train.rundir import load_run

    if not images:
        raise ValueError("give at least one image file")
    if top_k < 1:
        raise ArgumentError(f"top_k must be at least 1, got {top_k}", "top_k")
    run = load_run(run_dir)
    cfg = run.config
    net = run.build_network(which)
    net.hybridize(static_alloc=True, static_shape=True)
    batch = mx.nd.array(image_batch(images, cfg["mean"], cfg["std"], cfg["input_shape"]))
    block = prepare(net, batch) if prepare else net
    return classify(block, batch, images, run.dataset_meta.get("classes"), top_k)
