"""Loopback scaling: one process using every core against a job of N workers sharing them (docs/mxnet-notes.md#ps-lite-on-loopback).

Trains the same network with the same global batch twice, through the real commands:

  single   gluonfuse train (one process, one CPU context, OMP_NUM_THREADS = cores)
  job      gluonfuse launch -n N -s 1 -- gluonfuse train --kvstore dist_sync
           (N workers of one CPU context, OMP_NUM_THREADS = cores // N each, 1 server, 1 scheduler)
  thread1  for reference, gluonfuse train in one process with OMP_NUM_THREADS=1 (one worker's share
           on a machine with N cores)

and reports the images per second of the last epoch from each run's metrics.csv (for the job: the
whole job's images over rank 0's epoch time). The first epoch includes graph building; use
--epochs 2 or more. On one machine the job cannot be faster than the single process (the same cores,
plus the parameter-server traffic); the figure shows what the distributed path costs. Usage (a few
seconds per epoch at the defaults):

    python tools/benchmark.py dist [--network cross --depth 14 --workers 2 --batch-size 64 --images 1280
                                    --epochs 2 --data-dir DIR]
"""
import os
import subprocess
import sys
import tempfile

import bench_common

REPO = os.path.dirname(bench_common.TOOLS)


def add_arguments(p):
    p.add_argument("--network", default="cross", help="default cross")
    p.add_argument("--depth", type=int, default=14, help="default 14")
    p.add_argument("--workers", type=int, default=2, help="default 2")
    p.add_argument("--batch-size", type=int, default=64, help="global batch, split between the workers (default 64)")
    p.add_argument("--images", type=int, default=1280, help="training images of the synthetic dataset (default 1280)")
    p.add_argument("--epochs", type=int, default=2, help="default 2")
    p.add_argument("--data-dir", default=None, help="a prepared dataset instead of the synthetic one")


def _last_epoch(out_dir):
    from gluonfuse.results import find_run_dirs
    from gluonfuse.train.rundir import load_run

    runs = find_run_dirs(out_dir)
    if len(runs) != 1:
        raise RuntimeError(f"expected one run under {out_dir}, found {len(runs)}")
    return load_run(runs[0], strict=True).final


def _run(argv, out_dir, threads):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GLUONFUSE_DEFAULT_OMP_NUM_THREADS")}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-m", "gluonfuse", *argv], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"gluonfuse {' '.join(argv[:3])} ... failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    row = _last_epoch(out_dir)
    return {"images_per_sec": row["images_per_sec"], "epoch_seconds": row["seconds"]}


def run(args):
    bench_common.check_counts(args, ("workers", "batch_size", "images", "epochs"))
    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            from gluonfuse.train.synthetic import write_pattern_dataset

            data_dir = os.path.join(tmp, "patterns")
            write_pattern_dataset(data_dir, classes=10, train_per_class=max(1, args.images // 10), test_per_class=5)
        train = ["train", "--network", args.network, "--depth", str(args.depth), "--dataset", "bench",
                 "--data-dir", data_dir, "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                 "--seed", "0", "--quiet"]
        from gluonfuse.launch import job_environment

        cores = bench_common.visible_cores()
        threads_per_worker = job_environment(args.workers, 1, port=0)[1]  # the launcher's share
        single = _run(train + ["--out", os.path.join(tmp, "single")], os.path.join(tmp, "single"), cores)
        thread1 = _run(train + ["--out", os.path.join(tmp, "thread1")], os.path.join(tmp, "thread1"), 1)
        job = _run(["launch", "-n", str(args.workers), "-s", "1", "--", sys.executable, "-m", "gluonfuse", *train,
                    "--out", os.path.join(tmp, "job"), "--kvstore", "dist_sync"], os.path.join(tmp, "job"), None)
    res = {"section": "dist", "network": f"{args.network}_d{args.depth}", "batch_size": args.batch_size,
           "cores": cores, "workers": args.workers, "threads_per_worker": threads_per_worker,
           "single": single, "thread1": thread1, "job": job,
           "ratios": [bench_common.ratio([job["images_per_sec"]], [single["images_per_sec"]],
                                         name=f"dist: {args.workers}-worker job / 1 process")]}
    res["markdown"] = markdown(res)
    return res


def markdown(res):
    rows = [[f"1 process, {res['cores']} threads", f"{res['single']['images_per_sec']:.1f}"],
            [f"{res['workers']} workers x {res['threads_per_worker']} thread(s), dist_sync",
             f"{res['job']['images_per_sec']:.1f}"],
            ["(1 process, 1 thread)", f"{res['thread1']['images_per_sec']:.1f}"]]
    return "\n".join([
        f"loopback scaling, {res['network']}, global batch {res['batch_size']}, {res['cores']} cores, last epoch",
        "",
        bench_common.markdown_table(["run", "images/s"], rows),
        "",
        f"- job / single: {res['ratios'][0]['median']:.3f} (one run each)"])


if __name__ == "__main__":
    bench_common.exec_section("dist")
