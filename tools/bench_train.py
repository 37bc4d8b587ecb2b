"""Training throughput, three ways, side by side in one process on the same network and batch.

  pipeline  gluonfuse's training pass (gluonfuse.train.epoch.TrainingPass): ImageRecordIter decoding
            a .rec with augmentation type 1 (mirror in C++, zero pad + crop), split over the devices,
            hybridized forward/backward, kvstore update, exact metrics read one batch late;
  bare      the same network step on the same images held in memory (no decoding, no augmentation,
            no metrics): the ceiling of the pipeline;
  module    the authors' way: the network's symbol + SoftmaxOutput trained with mx.mod.Module
            (forward_backward, update, accuracy metric) from ImageRecordIter with C++ padding,
            crop and mirror, NAG and the same initialisation.

The cases alternate --repeat rounds; the table gives each case's best images/s, and the ratios
pipeline/bare (target >= 0.9) and pipeline/module (target >= 1.0) are the medians of the per-round
ratios, with their range. Usage (a few seconds per case at the defaults):

    python tools/benchmark.py train [--network cross --depth 14 --batch-size 64 --batches 12 --cpus 1 --repeat 3]
"""
import os
import tempfile
import time

import bench_common


def _setup(args, contexts):
    import mxnet as mx

    from gluonfuse.models import get_model

    Step, initialize, make_trainer, _ = bench_common.trainer_parts()
    mx.random.seed(0)
    net = initialize(get_model(args.network, depth=args.depth, classes=10), contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = make_trainer(net, "nag", 0.1, 1e-4, 0.9, "device")
    return net, Step(net, trainer, contexts)


def bench_pipeline(args, contexts, data_dir, mean, std):
    import itertools

    from gluonfuse.train.data import record_iter

    TrainingPass = bench_common.trainer_parts()[3]
    net, step = _setup(args, contexts)
    rec = os.path.join(data_dir, "train.rec")
    training_pass = TrainingPass(step, 10, source=rec)

    def run(n, seed):
        it = record_iter(rec, args.batch_size, (3, 32, 32), mean, std, aug_type=1, shuffle=True, seed=seed,
                         threads=args.threads)
        tic = time.time()
        training_pass(0, itertools.islice(it, n))
        return n * args.batch_size / (time.time() - tic)

    run(args.warmup, 1)
    return run(args.batches, 2)


def bench_bare(args, contexts, data_dir, mean, std):
    import mxnet as mx

    from gluonfuse.train.data import record_iter
    from gluonfuse.train.evaluate import split

    net, step = _setup(args, contexts)
    it = record_iter(os.path.join(data_dir, "train.rec"), args.batch_size, (3, 32, 32), mean, std,
                     threads=args.threads)
    batches = [split(next(it), contexts) for _ in range(min(args.batches, 8))]  # resident in memory
    mx.nd.waitall()

    def run(n):
        tic = time.time()
        for i in range(n):
            data, label = batches[i % len(batches)]
            step(data, label, args.batch_size)
        mx.nd.waitall()
        return n * args.batch_size / (time.time() - tic)

    run(args.warmup)
    return run(args.batches)


def bench_module(args, contexts, data_dir, mean, std):
    import mxnet as mx

    from gluonfuse.models import get_model

    net = get_model(args.network, depth=args.depth, classes=10)
    sym = mx.sym.SoftmaxOutput(net(mx.sym.var("data")), name="softmax")
    rec = os.path.join(data_dir, "train.rec")
    fill = int(round(sum(mean) / 3))  # one grey level: mxnet 1.9.1 has no per-channel fill

    def iterator(seed):
        return mx.io.ImageRecordIter(path_imgrec=rec, path_imgidx=rec[:-4] + ".idx", data_shape=(3, 32, 32),
                                     batch_size=args.batch_size, shuffle=True, seed=seed, pad=4, fill_value=fill,
                                     rand_crop=True, rand_mirror=True, preprocess_threads=args.threads,
                                     verbose=False, mean_r=mean[0], mean_g=mean[1], mean_b=mean[2],
                                     std_r=std[0], std_g=std[1], std_b=std[2])

    mod = mx.mod.Module(sym, context=contexts)
    it = iterator(1)
    mod.bind(data_shapes=it.provide_data, label_shapes=it.provide_label)
    mod.init_params(mx.init.Mixed([".*fc.*", ".*"], [mx.init.Xavier("uniform", "in", 1),
                                                       mx.init.Xavier("gaussian", "in", 2)]))
    mod.init_optimizer(kvstore="device", optimizer="nag",
                       optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4,
                                         "rescale_grad": 1.0 / args.batch_size})
    metric = mx.metric.create(["acc", "ce"])

    def run(n, it):
        tic = time.time()
        for i, batch in enumerate(it):
            mod.forward_backward(batch)
            mod.update()
            mod.update_metric(metric, batch.label)
            if i + 1 >= n:
                break
        metric.get()  # reads the metric values: waits for the last batch
        mx.nd.waitall()
        return n * args.batch_size / (time.time() - tic)

    run(args.warmup, it)
    return run(args.batches, iterator(2))


CASES = {"pipeline": bench_pipeline, "bare": bench_bare, "module": bench_module}


def add_arguments(parser):
    parser.add_argument("--network", default="cross", help="default cross")
    parser.add_argument("--depth", type=int, default=14, help="default 14")
    parser.add_argument("--batch-size", type=int, default=64, help="default 64")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per case (default 12)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (default 3)")
    parser.add_argument("--cpus", type=int, default=1, help="CPU contexts (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="decoding threads (default 2)")
    parser.add_argument("--data-dir", default=None, help="a prepared dataset (default: generated patterns)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds: the cases alternate this many times; best images/s kept, ratios per "
                             "round (default 1)")


def _measure(args):
    """images/s of every case in every round: ``{case: [round 1, round 2, ...]}``."""
    import mxnet as mx

    from gluonfuse.data.meta import read_meta
    from gluonfuse.train.data import normalisation
    from gluonfuse.train.synthetic import write_pattern_dataset

    contexts = [mx.cpu(i) for i in range(args.cpus)]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = tmp
            per_class = -(-(args.batches + args.warmup + 1) * args.batch_size // 10)
            write_pattern_dataset(tmp, classes=10, train_per_class=per_class, test_per_class=1)
        meta = read_meta(data_dir)
        mean, std = normalisation(meta.get("name", ""), meta)
        rounds = {name: [] for name in CASES}
        for _ in range(args.repeat):
            for name, fn in CASES.items():
                rounds[name].append(fn(args, contexts, data_dir, mean, std))
    return rounds


def run(args):
    bench_common.check_counts(args, ("batch_size", "batches", "cpus", "threads", "repeat"), ("warmup",))
    rounds = _measure(args)
    best = {k: max(v) for k, v in rounds.items()}
    result = {"section": "train", "network": f"{args.network}_d{args.depth}", "batch_size": args.batch_size,
              "contexts": args.cpus, "omp_threads": os.environ.get("OMP_NUM_THREADS"), "repeat": args.repeat,
              "images_per_sec": {k: round(v, 1) for k, v in best.items()}, "rounds": rounds,
              "ratios": [bench_common.ratio(rounds["pipeline"], rounds[other], name=f"train: pipeline / {other}")
                         for other in ("bare", "module")]}
    result["markdown"] = markdown(result)
    return result


def markdown(res):
    rows = [[name, f"{res['images_per_sec'][name]:.1f}", ", ".join(f"{v:.1f}" for v in res["rounds"][name])]
            for name in CASES]
    bare, module = res["ratios"]
    return "\n".join([
        f"train throughput, {res['network']}, batch {res['batch_size']}, {res['contexts']} context(s), "
        f"OMP_NUM_THREADS={res['omp_threads']}, {res['repeat']} alternating round(s)",
        "",
        bench_common.markdown_table(["case", "best images/s", "per round"], rows),
        "",
        f"- pipeline / bare: {bench_common.fmt_ratio(bare)} (target >= 0.9)",
        f"- pipeline / module: {bench_common.fmt_ratio(module)} (target >= 1.0)",
    ])


if __name__ == "__main__":
    bench_common.exec_section("train")
