#!/usr/bin/env python3
"""Data benchmark: packing speed against MXNet's own im2rec, and reading speed of a CIFAR-size .rec.

1. pack: one generated folder of photo-like JPEGs (crops of scikit-learn's sample photos) is listed
   once, then packed by ``tools/im2rec`` and by the ``im2rec.py`` that ships inside the mxnet package,
   with the same flags and the same thread count, one after the other in this run. Both run as
   subprocesses, as a user runs them. The report gives the end-to-end wall time and, beyond each
   tool's start-up (packing an empty list), the CPU time per image, which a busy shared machine
   distorts much less than wall time.
   The two outputs are compared byte for byte.
2. read: a CIFAR-size .rec (32x32 PNG records) is read through the trainer's own input pipeline
   (``gluonfuse.train.data.record_iter``): the CIFAR "+" augmentation (shuffle, random mirror and
   mean/std in ImageRecordIter, zero pad 4 + random crop in Python), a fresh iterator per epoch.

    python tools/bench_data.py --images 2000            # both parts, all cores
    python tools/bench_data.py --skip-read --threads 1

``run(args)`` (args from ``parse_args``) returns the figures as a dict; tools/benchmark.py calls it.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
sys.path.insert(0, REPO)

import gluonfuse  # noqa: E402,F401 - sizes mxnet's thread pool before mxnet is imported
from gluonfuse import visible_cores  # noqa: E402


def mxnet_im2rec_path():
    import importlib.util

    spec = importlib.util.find_spec("mxnet")
    return os.path.join(os.path.dirname(spec.origin), "tools", "im2rec.py")


def photo_crops(n, size=(375, 500), seed=0):
    """``n`` photo-like BGR images: random crops/scales/flips of scikit-learn's two sample photos."""
    import cv2
    import numpy as np
    import sklearn.datasets

    folder = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    photos = [cv2.imread(os.path.join(folder, f)) for f in ("china.jpg", "flower.jpg")]
    rng = np.random.RandomState(seed)
    for _ in range(n):
        src = photos[rng.randint(len(photos))]
        h, w = src.shape[:2]
        ch, cw = rng.randint(h // 3, h), rng.randint(w // 3, w)
        y, x = rng.randint(0, h - ch + 1), rng.randint(0, w - cw + 1)
        img = cv2.resize(src[y:y + ch, x:x + cw], (size[1], size[0]))
        if rng.rand() < 0.5:
            img = img[:, ::-1]
        yield np.ascontiguousarray(img)


def make_folder(root, n, classes=10, size=(375, 500)):
    """root/classK/NNNNN.jpg (JPEG quality 90), ``n`` images in all."""
    import cv2

    for k, img in enumerate(photo_crops(n, size)):
        d = os.path.join(root, f"class{k % classes}")
        os.makedirs(d, exist_ok=True)
        cv2.imwrite(os.path.join(d, f"{k:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def _timed(cmd):
    """(wall seconds, CPU seconds of the process and its children) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_pack(work, images, threads, flags, repeat=1):
    """Pack the same list with both tools, ``repeat`` times in turn (best time kept).

    Reports the end-to-end wall time (what a user waits for) and the CPU time per image beyond the
    tool's start-up (the work itself, which a busy shared machine does not distort much).
    """
    root = os.path.join(work, "images")
    make_folder(root, images)
    ours = [sys.executable, os.path.join(REPO, "tools", "im2rec")]
    theirs = [sys.executable, mxnet_im2rec_path()]
    tools = (("gluonfuse", ours), ("mxnet", theirs))
    res = {"images": images, "threads": threads, "flags": " ".join(flags), "repeat": repeat}
    for name, _ in tools:
        d = os.path.join(work, name)
        os.makedirs(d)
        subprocess.run([*ours, os.path.join(d, "p"), root, "--list", "--recursive"], check=True,
                       capture_output=True)
        with open(os.path.join(d, "empty.lst"), "w"):
            pass  # packing nothing measures the tool's fixed start-up cost
    best = {}
    for _ in range(repeat):  # alternate the tools so that a busy spell hurts both alike
        for name, tool in tools:
            d = os.path.join(work, name)
            for run_name in ("empty", "p"):
                wall, cpu = _timed([*tool, os.path.join(d, run_name), root, *flags,
                                    "--num-thread", str(threads)])
                key = (name, run_name)
                old = best.get(key, (wall, cpu))
                best[key] = (min(wall, old[0]), min(cpu, old[1]))
    for name, _ in tools:
        res[f"{name}_s"] = best[(name, "p")][0]
        res[f"{name}_startup_s"] = best[(name, "empty")][0]
        res[f"{name}_images_per_s"] = images / res[f"{name}_s"]
        res[f"{name}_cpu_ms_per_image"] = 1000 * max(best[(name, "p")][1] - best[(name, "empty")][1], 0) / images
    res["ratio_end_to_end"] = res["mxnet_s"] / res["gluonfuse_s"]
    res["ratio_cpu_per_image"] = res["mxnet_cpu_ms_per_image"] / max(res["gluonfuse_cpu_ms_per_image"], 1e-9)
    same = all(_read(os.path.join(work, "gluonfuse", "p" + ext)) == _read(os.path.join(work, "mxnet", "p" + ext))
               for ext in (".rec", ".idx"))
    res["identical_output"] = same
    return res


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def bench_read(work, images, threads, epochs=2, batch_size=128):
    """Images/s of the trainer's input pipeline over a CIFAR-size .rec: ``record_iter`` with aug type 1
    (mirror in ImageRecordIter, then zero pad 4 + random crop in Python), CIFAR-10's normalisation."""
    import cv2

    from gluonfuse.data import recordio
    from gluonfuse.data.prepare import encode_rgb
    from gluonfuse.data.presets import PRESETS
    from gluonfuse.train.data import record_iter

    rec, idx = os.path.join(work, "cifar.rec"), os.path.join(work, "cifar.idx")
    with recordio.open_writer(rec, idx) as w:
        for k, img in enumerate(photo_crops(images, size=(32, 32), seed=1)):
            w.write(k, recordio.pack(k % 10, encode_rgb(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)), key=k))
    norm = PRESETS["cifar10"]

    def epoch(e):  # a fresh iterator per pass, as the trainer makes them
        return record_iter(rec, batch_size, (3, 32, 32), norm["mean"], norm["std"], aug_type=1, shuffle=True,
                           seed=e, threads=threads)

    next(iter(epoch(0)))  # start-up and the first batch are not the steady state
    seen = 0
    start = time.perf_counter()
    for e in range(epochs):
        for batch in epoch(e + 1):
            batch.data[0].wait_to_read()
            seen += batch.data[0].shape[0] - batch.pad
    seconds = time.perf_counter() - start
    return {"images": images, "epochs": epochs, "threads": threads, "batch_size": batch_size,
            "rec_bytes": os.path.getsize(rec), "images_per_s": seen / seconds}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=int, default=2000, help="images to pack (generated 375x500 JPEGs)")
    p.add_argument("--threads", type=int, default=visible_cores(),
                   help="--num-thread of both im2recs and preprocess_threads of the reader")
    p.add_argument("--flags", default="--resize 256 --quality 95",
                   help="pack flags given to both im2recs")
    p.add_argument("--read-images", type=int, default=10000, help="records in the CIFAR-size .rec")
    p.add_argument("--epochs", type=int, default=2, help="epochs read through the trainer's pipeline")
    p.add_argument("--repeat", type=int, default=3,
                   help="pack runs per tool, alternating; the best is kept (a shared machine is noisy)")
    p.add_argument("--skip-pack", action="store_true")
    p.add_argument("--skip-read", action="store_true")
    return p.parse_args(argv)


def run(args):
    """Both benchmarks; returns {"pack": {...}, "read": {...}}."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench_data_") as work:
        if not args.skip_pack:
            out["pack"] = bench_pack(os.path.join(work, "pack"), args.images, args.threads,
                                     args.flags.split(), args.repeat)
        if not args.skip_read:
            os.makedirs(os.path.join(work, "read"))
            out["read"] = bench_read(os.path.join(work, "read"), args.read_images, args.threads,
                                     args.epochs)
    return out


def report(res):
    lines = []
    if "pack" in res:
        p = res["pack"]
        lines += [
            f"pack {p['images']} JPEGs 375x500 ({p['flags']}, {p['threads']} threads, best of "
            f"{p['repeat']}):",
            f"  gluonfuse tools/im2rec : {p['gluonfuse_s']:6.2f} s  {p['gluonfuse_images_per_s']:7.1f} images/s "
            f"(start-up {p['gluonfuse_startup_s']:.2f} s; {p['gluonfuse_cpu_ms_per_image']:.2f} ms CPU per image)",
            f"  mxnet im2rec.py        : {p['mxnet_s']:6.2f} s  {p['mxnet_images_per_s']:7.1f} images/s "
            f"(start-up {p['mxnet_startup_s']:.2f} s; {p['mxnet_cpu_ms_per_image']:.2f} ms CPU per image)",
            f"  ratio gluonfuse/mxnet  : {p['ratio_end_to_end']:.2f}x end to end, "
            f"{p['ratio_cpu_per_image']:.2f}x less CPU per image; identical output: {p['identical_output']}",
        ]
    if "read" in res:
        r = res["read"]
        lines.append(f"read {r['images']} CIFAR-size records x {r['epochs']} epochs through the trainer's "
                     f"pipeline (ImageRecordIter with mirror, {r['threads']} threads; then pad 4, rand crop): "
                     f"{r['images_per_s']:.0f} images/s")
    return "\n".join(lines)


def main(argv=None):
    print(report(run(parse_args(argv))))


if __name__ == "__main__":
    main()
