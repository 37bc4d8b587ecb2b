"""Training and inference speed of a network, side by side with gluoncv, PyTorch or another network.

Training is the trainer's own step (gluonfuse.train.step.Step: forward + backward + NAG update, lr 0.1,
momentum 0.9, wd 1e-4) on a fixed random batch; inference is one forward in predict mode. Gluon networks
are hybridized with static_alloc and static_shape. Every contender runs in its own Python process, and
the processes take turns (A B, B A, ...); the table gives the median images/s over rounds, its spread
((max - min) / median) and "row 1 / row": the median of the per-round ratios of the first contender's
speed to this row's. "cores" is process CPU time over wall time. --in-process runs them all in this
process instead; do not compare mxnet with PyTorch that way: their two OpenMP thread pools then compete
for the cores (resnet 56 on 2 cores: both keep about 1.7 cores busy instead of 2 and train 15-25%
slower).

Contenders (--against, comma-separated; 'auto' picks what exists for --network):
  gluoncv        gluoncv's counterpart (cifar_resnet20/56/110_v1 for resnet 20/56/110)
  gluoncv:NAME   any gluoncv.model_zoo network
  torch, torch-cl, torch-compile
                 the same architecture in PyTorch on the CPU: eager, channels_last, torch.compile
                 (skipped, with the reason, when torch is not installed: pip install torch==2.13.0)
  NET[:DEPTH[:WIDEN]]
                 another gluonfuse network, e.g. resnet:110
--threads-check instead compares mxnet's default thread pool (OMP_NUM_THREADS unset: half the cores)
with gluonfuse's (every core), each in its own subprocess.
"""
import importlib
import importlib.util
import json
import os
import subprocess
import sys

import bench_common
import bench_machine

TORCH_VARIANTS = {"torch": "eager", "torch-cl": "channels_last", "torch-compile": "compile"}
TORCH_HINT = "torch is not installed (pip install torch==2.13.0, the 'bench' extra)"
# gluonfuse network -> the gluoncv model of the same architecture, by depth (widen 1 only)
GLUONCV_COUNTERPARTS = {"resnet": {20: "cifar_resnet20_v1", 56: "cifar_resnet56_v1", 110: "cifar_resnet110_v1"}}
# networks that get the residual network of the same depth (about the same parameters) under 'auto'
RESIDUAL_BASELINE = ("cross", "half", "side")
WORKER_TAG = "@@bench "
# `benchmark.py --serve-contender JOB` serves one contender in its own process (WorkerContender)
SERVE_CONTENDER = "--serve-contender"


def add_arguments(parser):
    net = parser.add_argument_group("network")
    net.add_argument("--network", default="resnet", help="a registered network or preset (default resnet)")
    net.add_argument("--depth", type=int, help="depth (default: the network's own; 56 for resnet)")
    net.add_argument("--widen-factor", type=int, help="widen factor (families that take one)")
    net.add_argument("--classes", type=int, help="classes (default: the network's own, 10 for CIFAR networks)")
    net.add_argument("--against", default="auto",
                     help="comma-separated contenders (see above), 'auto' or 'none' (default auto)")
    dev = parser.add_mutually_exclusive_group()
    dev.add_argument("--cpus", type=int, default=1, help="number of CPU contexts (default 1)")
    dev.add_argument("--gpus", help="GPU ids, e.g. 0,1 (PyTorch rows are CPU only and are then skipped)")
    run = parser.add_argument_group("timing")
    run.add_argument("--batch-size", type=int, default=64, help="images per step, all devices (default 64)")
    run.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported (default 3)")
    run.add_argument("--iters", type=int, default=3, help="steps per contender per round and mode (default 3)")
    run.add_argument("--warmup", type=int, default=2, help="untimed steps per mode first (default 2)")
    run.add_argument("--modes", default="train,infer", help="train, infer or both (default train,infer)")
    run.add_argument("--in-process", action="store_true",
                     help="run every contender in this process rather than each in its own (faster to "
                          "start; unfair between mxnet and PyTorch, whose thread pools then compete)")
    run.add_argument("--threads-check", action="store_true",
                     help="compare mxnet's default threads with gluonfuse's instead of the contenders")
    run.add_argument("--max-other-load", type=float, metavar="CORES",
                     help="run a round again when other processes kept more cores than this busy "
                          "(a shared machine; default: keep every round)")
    run.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no per-round progress on stderr")


# ---------------------------------------------------------------- contender descriptions

def _family(network):
    from gluonfuse.models import get_entry

    return get_entry(network).family  # a preset's family: dfn_mr1 -> cross


def _network_kwargs(args):
    kwargs = {}
    if args.classes is not None:
        kwargs["classes"] = args.classes
    if args.depth is not None:
        kwargs["depth"] = args.depth
    elif args.network == "resnet":
        kwargs["depth"] = 56
    if args.widen_factor is not None:
        kwargs["widen_factor"] = args.widen_factor
    return kwargs


def _spec(network, kwargs):
    from gluonfuse.models import get_spec

    return get_spec(network, **kwargs)


def _contexts(args):
    if args.gpus:
        try:
            ids = [int(g) for g in args.gpus.split(",") if g.strip()]
        except ValueError:
            raise ValueError(f"--gpus takes GPU ids like 0,1, not {args.gpus!r}") from None
        return "gpu", ids
    if args.cpus < 1:
        raise ValueError(f"--cpus must be at least 1, got {args.cpus}")
    return "cpu", list(range(args.cpus))


def contender_descriptions(args):
    """The contenders to run, as JSON-able dicts; the primary (--network) first."""
    kwargs = _network_kwargs(args)
    primary = {"kind": "gluonfuse", "network": args.network, "kwargs": kwargs}
    spec = _spec(args.network, kwargs)  # ValueError for unknown networks and bad depths
    primary["label"] = f"gluonfuse {spec.name}"
    descs = [primary]
    tokens = [t.strip() for t in args.against.split(",") if t.strip()]
    if tokens == ["none"]:
        return descs
    if "auto" in tokens:
        tokens.remove("auto")
        if _gluoncv_counterpart(spec):
            tokens.insert(0, "gluoncv")
        if _family(args.network) in RESIDUAL_BASELINE:
            tokens.insert(0, f"resnet:{spec.depth}:{spec.widen_factor}")
        tokens.append("torch")
    for token in dict.fromkeys(tokens):  # keep order, drop repeats
        descs.append(_describe(token, args, spec, kwargs))
    return descs


def _gluoncv_counterpart(spec):
    if getattr(spec, "widen_factor", None) != 1:  # also rules out the ImageNet networks
        return None
    return GLUONCV_COUNTERPARTS.get(spec.network, {}).get(spec.depth)


def _describe(token, args, spec, kwargs):
    if token in TORCH_VARIANTS:
        variant = TORCH_VARIANTS[token]
        return {"kind": "torch", "network": args.network, "kwargs": kwargs, "variant": variant,
                "label": f"PyTorch {variant} {spec.name}"}
    if token == "gluoncv" or token.startswith("gluoncv:"):
        name = token.partition(":")[2] or _gluoncv_counterpart(spec)
        if not name:
            known = ", ".join(f"{n} {d} -> {m}" for n, ms in GLUONCV_COUNTERPARTS.items() for d, m in ms.items())
            raise ValueError(f"gluoncv has no counterpart of {spec.name}; known: {known} "
                             "(or name one: gluoncv:MODEL)")
        return {"kind": "gluoncv", "network": name, "kwargs": {"classes": spec.classes},
                "label": f"gluoncv {name}"}
    name, *rest = token.split(":")
    try:
        numbers = [int(v) for v in rest]
        if len(numbers) > 2:
            raise ValueError
    except ValueError:
        raise ValueError(f"bad contender {token!r}: write NET, NET:DEPTH or NET:DEPTH:WIDEN") from None
    other = {"classes": spec.classes}
    other.update(zip(("depth", "widen_factor"), numbers))
    try:
        other_spec = _spec(name, other)
    except ValueError as exc:
        raise ValueError(f"{exc} Or one of: auto, none, gluoncv, {', '.join(TORCH_VARIANTS)}.") from None
    return {"kind": "gluonfuse", "network": name, "kwargs": other, "label": f"gluonfuse {other_spec.name}"}


# ---------------------------------------------------------------- contenders

class Skipped:
    """A contender that cannot run here; the report says why."""

    def __init__(self, label, reason):
        self.label, self.reason = label, reason


def _batch(batch_size, input_shape, classes, seed):
    import numpy as np

    rng = np.random.RandomState(seed)
    x = rng.normal(size=(batch_size,) + tuple(input_shape)).astype("float32")
    y = rng.randint(0, classes, size=batch_size).astype("float32")
    return x, y


class GluonContender:
    """A Gluon HybridBlock (gluonfuse or gluoncv) trained with gluonfuse's own training step on mxnet contexts."""

    def __init__(self, desc, net, input_shape, classes, ctx_kind, ctx_ids, batch_size, seed):
        import mxnet as mx
        from mxnet import gluon

        from gluonfuse.train.metrics import as_outputs

        Step, initialize, make_trainer, _ = bench_common.trainer_parts()
        self.desc, self.label, self.net = desc, desc["label"], net
        self.mx, self.as_outputs = mx, as_outputs
        ctxs = [getattr(mx, ctx_kind)(i) for i in ctx_ids]
        mx.random.seed(seed)
        # the recipes' initialisation (docs/recipes.md#initialisation); it does not change the speed, but keeps the runs comparable
        initialize(net, ctxs)
        net.hybridize(static_alloc=True, static_shape=True)
        x, y = _batch(batch_size, input_shape, classes, seed)
        self.xs = gluon.utils.split_and_load(mx.nd.array(x), ctxs, even_split=False)
        self.ys = gluon.utils.split_and_load(mx.nd.array(y), ctxs, even_split=False)
        # the trainer's step: forward, loss, backward and the NAG update of the recipe (docs/recipes.md#fusion)
        self.step = Step(net, make_trainer(net, "nag", 0.1, 1e-4, 0.9, "device"), ctxs)
        self.batch_size = batch_size

    def train_step(self):
        self.step(self.xs, self.ys, self.batch_size)

    def infer_step(self):
        for x in self.xs:
            self.as_outputs(self.net(x))

    def sync(self):
        self.mx.nd.waitall()

    def params(self):
        from gluonfuse.models import count_params

        return count_params(self.net)

    def run(self, mode, iters):
        return bench_common.timed(self.train_step if mode == "train" else self.infer_step, self.sync, iters)

    def close(self):
        pass


class TorchContender:
    """The same architecture in PyTorch on the CPU, with as many threads as mxnet."""

    def __init__(self, desc, spec, batch_size, seed, threads):
        import torch

        import bench_torch

        self.desc, self.label, self.torch = desc, desc["label"], torch
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        model = bench_torch.FusionNet(spec)
        x, y = _batch(batch_size, spec.input_shape, spec.classes, seed)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y).long()
        if desc["variant"] == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.model = model
        self.forward = torch.compile(model) if desc["variant"] == "compile" else model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
        self.loss = torch.nn.CrossEntropyLoss()
        self.n_params = bench_torch.count_params(model)

    def train_step(self):
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.forward(self.x), self.y).backward()
        self.opt.step()

    def infer_step(self):
        self.model.eval()
        with self.torch.inference_mode():
            self.forward(self.x)

    def sync(self):
        pass  # CPU execution is synchronous

    def params(self):
        return self.n_params

    def run(self, mode, iters):
        return bench_common.timed(self.train_step if mode == "train" else self.infer_step, self.sync, iters)

    def close(self):
        pass


def torch_installed():
    return importlib.util.find_spec("torch") is not None


def skip_reason(desc, ctx_kind):
    """Why ``desc`` cannot run here (None when it can); cheap, imports no framework."""
    if desc["kind"] == "gluoncv" and importlib.util.find_spec("gluoncv") is None:
        return "gluoncv is not installed"
    if desc["kind"] != "torch":
        return None
    if not torch_installed():
        return TORCH_HINT
    if ctx_kind != "cpu":
        return "the PyTorch rows run on the CPU only"
    spec = _spec(desc["network"], desc["kwargs"])
    if spec.network not in bench_common.TORCH_NETWORKS or not hasattr(spec, "blocks"):
        return f"no PyTorch version of {spec.name} (written: CIFAR {', '.join(bench_common.TORCH_NETWORKS)})"
    return None


def build_contender(desc, ctx_kind, ctx_ids, batch_size, seed):
    """An in-process contender for ``desc`` (check :func:`skip_reason` first)."""
    if desc["kind"] == "torch":
        return TorchContender(desc, _spec(desc["network"], desc["kwargs"]), batch_size, seed,
                              bench_common.thread_count())
    if desc["kind"] == "gluoncv":
        net = _import_gluoncv().get_model(desc["network"], **desc["kwargs"])
        # gluoncv's CIFAR networks take CIFAR-size images
        return GluonContender(desc, net, (3, 32, 32), desc["kwargs"]["classes"], ctx_kind, ctx_ids, batch_size, seed)
    from gluonfuse.models import get_model

    net = get_model(desc["network"], **desc["kwargs"])
    return GluonContender(desc, net, net.spec.input_shape, net.spec.classes, ctx_kind, ctx_ids, batch_size, seed)


def _import_gluoncv():
    """gluoncv's model zoo. gluoncv 0.10 raises at import when torch >= 2 is installed, so torch is
    hidden from it while it loads (its model zoo does not use torch)."""
    missing = object()
    saved = sys.modules.get("torch", missing)
    sys.modules["torch"] = None  # makes 'import torch' raise ImportError, which gluoncv tolerates
    try:
        from gluoncv import model_zoo
    finally:
        if saved is missing:
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = saved
    return model_zoo


class WorkerContender:
    """A contender in its own Python process, driven over stdin/stdout (the default, and --threads-check)."""

    def __init__(self, desc, setup, env):
        self.desc, self.label = desc, desc["label"]
        job = dict(setup, desc=desc)
        cmd = [sys.executable, os.path.join(bench_common.TOOLS, "benchmark.py"), SERVE_CONTENDER, json.dumps(job)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._reply()

    def _reply(self):
        for line in self.proc.stdout:
            if line.startswith(WORKER_TAG):
                reply = json.loads(line[len(WORKER_TAG):])
                if "error" in reply:
                    raise RuntimeError(f"{self.label}: {reply['error']}")
                return reply
        raise RuntimeError(f"{self.label}: the worker process ended (exit code {self.proc.wait()})")

    def params(self):
        return self.info["params"]

    def run(self, mode, iters):
        self.proc.stdin.write(f"{mode} {iters}\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def contender_builder(job):
    """The module whose ``skip_reason`` and ``build_contender`` make ``job``'s contender: ``job["builder"]``
    (another section's module, e.g. bench_infer) or this one."""
    return importlib.import_module(job.get("builder", __name__))


def worker_main(job):
    """Serve one contender: answer 'MODE ITERS' lines with timings, one JSON line each."""
    def send(obj):
        sys.stdout.write(WORKER_TAG + json.dumps(obj) + "\n")
        sys.stdout.flush()

    builder = contender_builder(job)
    try:
        if job.get("mxnet_default_threads"):
            # undo gluonfuse's choice before mxnet loads: this process shows mxnet's own default
            if "mxnet" in sys.modules:
                raise RuntimeError("mxnet was imported before the worker could unset the thread variables")
            for var in bench_common.THREAD_VARS:
                os.environ.pop(var, None)
        reason = builder.skip_reason(job["desc"], job["ctx_kind"])
        if reason:
            raise RuntimeError(reason)
        c = builder.build_contender(job["desc"], job["ctx_kind"], job["ctx_ids"], job["batch_size"], job["seed"])
        _warm_up(c, job["modes"], job["warmup"])
        send(dict(getattr(c, "notes", {}), params=c.params(), threads=bench_common.thread_count()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        send({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    for line in sys.stdin:
        mode, iters = line.split()
        send(c.run(mode, int(iters)))
    return 0


def _warm_up(contender, modes, warmup):
    # the first steps build the cached graph, MKLDNN primitives or compiled kernels
    for mode in modes:
        contender.run(mode, max(1, warmup))


# ---------------------------------------------------------------- the run

def _modes(text):
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("train", "infer")]
    if bad or not modes:
        raise ValueError(f"--modes takes train, infer or train,infer, not {text!r}")
    return modes


def run(args):
    bench_common.check_counts(args, ("batch_size", "rounds", "iters"), ("warmup",))
    modes = _modes(args.modes)
    ctx_kind, ctx_ids = _contexts(args)
    if ctx_kind == "gpu":
        import mxnet as mx

        if mx.context.num_gpus() < len(ctx_ids) or max(ctx_ids) >= mx.context.num_gpus():
            raise ValueError(f"--gpus {args.gpus}: this machine has {mx.context.num_gpus()} GPU(s) for mxnet; "
                             "use --cpus N")
    setup = {"ctx_kind": ctx_kind, "ctx_ids": ctx_ids, "batch_size": args.batch_size, "seed": args.seed,
             "modes": modes, "warmup": args.warmup}
    descs = contender_descriptions(args)
    say = None if args.quiet else bench_common.log
    if args.threads_check:
        descs = descs[:1]
        contenders, skipped = _threads_check_contenders(descs[0], setup, say), []
    else:
        contenders, skipped = start_contenders(descs, setup, not args.in_process, say)
    try:
        results, discarded = bench_common.interleave(contenders, modes, args.rounds, args.iters, args.batch_size,
                                                     log=say, max_other_load=args.max_other_load)
        return _report(args, setup, contenders, skipped, results, discarded)
    finally:
        for c in contenders:
            c.close()


def optional(desc):
    """A contender reported as skipped, with the reason, when it fails to start: PyTorch channels_last
    and torch.compile (reported when they work, not required), or any desc with ``optional`` true."""
    return desc.get("optional", desc["kind"] == "torch" and desc["variant"] != "eager")


def start_contenders(descs, setup, isolate, say):
    """``(contenders, skipped)``: ``descs`` started in worker processes (``isolate``) or in this one;
    ``setup["builder"]`` names the module that builds them (default this one)."""
    builder = contender_builder(setup)
    contenders, skipped = [], []
    env = dict(os.environ)  # carries the OMP_NUM_THREADS gluonfuse chose to the workers
    for desc in descs:
        reason = builder.skip_reason(desc, setup["ctx_kind"])
        if reason:
            skipped.append(Skipped(desc["label"], reason))
            continue
        if say:
            say(f"setting up {desc['label']}")
        try:
            if isolate:
                c = WorkerContender(desc, setup, env)
            else:
                c = builder.build_contender(desc, setup["ctx_kind"], setup["ctx_ids"], setup["batch_size"],
                                            setup["seed"])
                _warm_up(c, setup["modes"], setup["warmup"])
        except Exception as exc:  # noqa: BLE001
            if not optional(desc):
                raise
            skipped.append(Skipped(desc["label"], f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"))
            continue
        contenders.append(c)
    return contenders, skipped


def _threads_check_contenders(desc, setup, say):
    cores = bench_common.visible_cores()
    env = {k: v for k, v in os.environ.items() if k not in bench_common.THREAD_VARS}
    default = dict(desc, label=f"{desc['label']}, mxnet default threads (OMP_NUM_THREADS unset)")
    ours = dict(desc, label=f"{desc['label']}, gluonfuse threads (OMP_NUM_THREADS={cores})")
    out = []
    # gluonfuse's row first, so "row 1 / row" reads as gluonfuse's speed-up over mxnet's default
    for d, extra in ((ours, {}), (default, {"mxnet_default_threads": True})):
        if say:
            say(f"setting up {d['label']} in a subprocess")
        out.append(WorkerContender(d, dict(setup, **extra), env))
    return out


def _row(contender, results, first, modes):
    row = {"label": contender.label, "params": contender.params()}
    for mode in modes:
        rec = results[contender.label][mode]
        row[mode] = bench_common.summary(rec["images_per_sec"])
        row[mode]["cores_busy"] = bench_common.summary(rec["cores_busy"])["median"]
        row[mode]["other_load"] = bench_common.summary(rec["other_load"]) if rec["other_load"] else None
        row[mode]["first_over_this"] = bench_common.ratio(results[first][mode]["images_per_sec"],
                                                          rec["images_per_sec"])
    return row


def _table(rows, skipped, modes):
    headers = ["contender", "params"]
    for mode in modes:
        headers += [f"{mode} img/s", "spread", "cores", "row 1 / row"]
    table = []
    for row in rows:
        cells = [row["label"], f"{row['params']:,}"]
        for mode in modes:
            r = row[mode]
            cells += [f"{r['median']:.1f}", f"{100 * r['spread']:.0f}%", f"{r['cores_busy']:.2f}",
                      f"{r['first_over_this']['median']:.2f}"]
        table.append(cells)
    for s in skipped:
        table.append([s.label, "", f"skipped: {s.reason}"] + [""] * (4 * len(modes) - 1))
    return bench_common.markdown_table(headers, table)


def _threads_text(args, contenders):
    if args.threads_check:
        return "; ".join(f"{c.label}: {c.info['threads']} OpenMP thread(s)" for c in contenders)
    text = f"mxnet: {bench_common.thread_count()} OpenMP threads ({bench_common.thread_source()})"
    if any(c.desc["kind"] == "torch" for c in contenders):
        text += f"; PyTorch: torch.set_num_threads({bench_common.thread_count()})"
    return text


def noise_line(contenders, results, discarded):
    other = [v for c in contenders for rec in results[c.label].values() for v in rec["other_load"]]
    if not other:
        return None
    med = bench_common.summary(other)["median"]
    return (f"- noise: other processes kept {med:.2f} cores busy during the timed steps (median; max {max(other):.2f})"
            + (f"; {discarded} busier round(s) discarded" if discarded else "")
            + (": figures are disturbed, rerun when the machine is quieter" if med > 0.25 else ""))


def _report(args, setup, contenders, skipped, results, discarded):
    modes = setup["modes"]
    first = contenders[0].label
    rows = [_row(c, results, first, modes) for c in contenders]
    ratios = [dict(row[mode]["first_over_this"], name=f"{mode}: {first} / {row['label']}")
              for row in rows[1:] for mode in modes]
    ratios += [{"name": f"{first} / {s.label}", "skipped": s.reason} for s in skipped]
    threads = _threads_text(args, contenders)
    cpu = bench_machine.cpu()["model"]
    ctx = f"{setup['ctx_kind']} {','.join(map(str, setup['ctx_ids']))}"
    lines = [
        f"{cpu}, {bench_common.visible_cores()} visible cores; contexts: {ctx}; batch {args.batch_size}; "
        f"{args.rounds} rounds x {args.iters} steps per mode (after {args.warmup} warm-up steps); "
        f"{'all contenders in one process' if args.in_process else 'each contender in its own process'}",
        f"threads: {threads}",
        "",
        _table(rows, skipped, modes),
        "",
    ]
    for row in rows[1:]:
        for mode in modes:
            r = row[mode]["first_over_this"]
            lines.append(f"- {mode}: {first} runs at {r['median']:.2f}x {row['label']} (per-round ratios "
                         f"{r['min']:.2f}-{r['max']:.2f}; params {rows[0]['params']:,} vs {row['params']:,})")
    noise = noise_line(contenders, results, discarded)
    if noise:
        lines.append(noise)
    return {"section": "models", "command": bench_common.command_line(),
            "machine": {"cpu": cpu, "visible_cores": bench_common.visible_cores()},
            "versions": bench_common.versions(), "threads": threads, "contexts": ctx,
            "batch_size": args.batch_size, "rounds": args.rounds, "iters": args.iters, "warmup": args.warmup,
            "modes": modes, "contenders": rows, "discarded_rounds": discarded, "ratios": ratios,
            "skipped": [{"label": s.label, "reason": s.reason} for s in skipped],
            "markdown": "\n".join(lines)}


if __name__ == "__main__":
    bench_common.exec_section("models")
