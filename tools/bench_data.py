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

The packing rounds alternate the two tools (--repeat); the report gives the best of each and the
median and range of the per-round ratios.

    python tools/benchmark.py data --images 2000            # both parts, all cores
    python tools/benchmark.py data --skip-read --threads 1
"""
import os
import resource
import subprocess
import sys
import tempfile
import time

import bench_common

REPO = os.path.dirname(bench_common.TOOLS)


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


TOOL_LABELS = {"gluonfuse": "gluonfuse tools/im2rec", "mxnet": "mxnet im2rec.py"}


def bench_pack(work, images, threads, flags, repeat=1):
    """Pack the same list with both tools, ``repeat`` rounds in turn (best times kept, ratios per round).

    Reports the end-to-end wall time (what a user waits for) and the CPU time per image beyond the
    tool's start-up (the work itself, which a busy shared machine does not distort much).
    """
    root = os.path.join(work, "images")
    make_folder(root, images)
    ours = [sys.executable, os.path.join(REPO, "tools", "im2rec")]
    tools = {"gluonfuse": ours, "mxnet": [sys.executable, mxnet_im2rec_path()]}
    for name in tools:
        d = os.path.join(work, name)
        os.makedirs(d)
        subprocess.run([*ours, os.path.join(d, "p"), root, "--list", "--recursive"], check=True,
                       capture_output=True)
        with open(os.path.join(d, "empty.lst"), "w"):
            pass  # packing nothing measures the tool's fixed start-up cost
    timings = {(name, run_name): [] for name in tools for run_name in ("empty", "p")}
    for _ in range(repeat):  # alternate the tools so that a busy spell hurts both alike
        for name, tool in tools.items():
            for run_name in ("empty", "p"):
                timings[(name, run_name)].append(_timed([*tool, os.path.join(work, name, run_name), root, *flags,
                                                         "--num-thread", str(threads)]))
    res = {"images": images, "threads": threads, "flags": " ".join(flags), "repeat": repeat}
    cpu_ms = {}
    for name in tools:
        full, empty = timings[(name, "p")], timings[(name, "empty")]
        res[f"{name}_s"] = min(wall for wall, _ in full)
        res[f"{name}_startup_s"] = min(wall for wall, _ in empty)
        res[f"{name}_images_per_s"] = images / res[f"{name}_s"]
        cpu_ms[name] = [1000 * max(f[1] - e[1], 0) / images for f, e in zip(full, empty)]
        res[f"{name}_cpu_ms_per_image"] = min(cpu_ms[name])
    ours_name, theirs_name = TOOL_LABELS["gluonfuse"], TOOL_LABELS["mxnet"]
    res["end_to_end"] = bench_common.ratio([w for w, _ in timings[("mxnet", "p")]],
                                           [w for w, _ in timings[("gluonfuse", "p")]],
                                           name=f"pack end to end: {ours_name} / {theirs_name}")
    name = f"pack CPU per image: {ours_name} / {theirs_name}"
    if min(cpu_ms["gluonfuse"]) > 0 and min(cpu_ms["mxnet"]) > 0:
        res["cpu_per_image"] = bench_common.ratio(cpu_ms["mxnet"], cpu_ms["gluonfuse"], name=name)
    else:
        res["cpu_per_image"] = {"name": name, "skipped": f"{images} images cost less CPU than start-up jitter"}
    res["identical_output"] = all(
        _read(os.path.join(work, "gluonfuse", "p" + ext)) == _read(os.path.join(work, "mxnet", "p" + ext))
        for ext in (".rec", ".idx"))
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
    seen, seconds = [], []
    for e in range(epochs):
        seen.append(0)
        start = time.perf_counter()
        for batch in epoch(e + 1):
            batch.data[0].wait_to_read()
            seen[-1] += batch.data[0].shape[0] - batch.pad
        seconds.append(time.perf_counter() - start)
    return {"images": images, "epochs": epochs, "threads": threads, "batch_size": batch_size,
            "rec_bytes": os.path.getsize(rec), "images_per_s": sum(seen) / sum(seconds),
            "per_epoch": bench_common.summary([n / t for n, t in zip(seen, seconds)])}


def add_arguments(p):
    p.add_argument("--images", type=int, default=2000, help="images to pack (generated 375x500 JPEGs; default 2000)")
    p.add_argument("--threads", type=int, default=bench_common.visible_cores(),
                   help="--num-thread of both im2recs and preprocess_threads of the reader (default: the "
                        "visible cores)")
    p.add_argument("--flags", default="--resize 256 --quality 95",
                   help="pack flags given to both im2recs (default '--resize 256 --quality 95')")
    p.add_argument("--read-images", type=int, default=10000, help="records in the CIFAR-size .rec (default 10000)")
    p.add_argument("--epochs", type=int, default=2, help="epochs read through the trainer's pipeline (default 2)")
    p.add_argument("--repeat", type=int, default=3,
                   help="pack rounds per tool, alternating; the best time is kept, the ratios are per round "
                        "(default 3)")
    p.add_argument("--skip-pack", action="store_true")
    p.add_argument("--skip-read", action="store_true")


def run(args):
    """Both benchmarks: the section result with ``pack`` and ``read`` figures."""
    bench_common.check_counts(args, ("images", "threads", "read_images", "epochs", "repeat"))
    res = {"section": "data"}
    with tempfile.TemporaryDirectory(prefix="bench_data_") as work:
        if not args.skip_pack:
            res["pack"] = bench_pack(os.path.join(work, "pack"), args.images, args.threads,
                                     args.flags.split(), args.repeat)
        if not args.skip_read:
            os.makedirs(os.path.join(work, "read"))
            res["read"] = bench_read(os.path.join(work, "read"), args.read_images, args.threads,
                                     args.epochs)
    res["ratios"] = [res["pack"]["end_to_end"], res["pack"]["cpu_per_image"]] if "pack" in res else []
    res["markdown"] = markdown(res)
    return res


def _pack_markdown(p):
    rows = [[TOOL_LABELS[name], f"{p[f'{name}_s']:.2f}", f"{p[f'{name}_startup_s']:.2f}",
             f"{p[f'{name}_images_per_s']:.1f}", f"{p[f'{name}_cpu_ms_per_image']:.2f}"]
            for name in ("gluonfuse", "mxnet")]
    cpu = p["cpu_per_image"]
    cpu_text = f"skipped: {cpu['skipped']}" if "skipped" in cpu else bench_common.fmt_ratio(cpu)
    return [
        f"pack {p['images']} JPEGs 375x500 ({p['flags']}, {p['threads']} threads, {p['repeat']} alternating "
        "rounds, best time of each tool):",
        "",
        bench_common.markdown_table(["tool", "seconds", "start-up s", "images/s", "CPU ms per image beyond start-up"],
                                    rows),
        "",
        f"- gluonfuse / mxnet, end to end: {bench_common.fmt_ratio(p['end_to_end'])}; CPU per image: {cpu_text}",
        f"- identical output: {p['identical_output']}",
    ]


def markdown(res):
    lines = _pack_markdown(res["pack"]) if "pack" in res else []
    if "read" in res:
        r = res["read"]
        e = r["per_epoch"]
        lines.append(f"- read {r['images']} CIFAR-size records x {r['epochs']} epochs through the trainer's "
                     f"pipeline (ImageRecordIter with mirror, {r['threads']} threads; then pad 4, random crop): "
                     f"{r['images_per_s']:.0f} images/s (per epoch {e['min']:.0f}-{e['max']:.0f})")
    return "\n".join(lines)


if __name__ == "__main__":
    bench_common.exec_section("data")
