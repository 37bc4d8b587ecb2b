"""The training options beyond the recipes: schedules, warm-up, label smoothing, mixup, cutmix,
cutout, weight decay only on weights, gradient clipping; each changes what it should and nothing
when it is off."""
import csv
import json
import math
import os
import signal

import numpy as np
import pytest

from conftest import run_gluonfuse
from train_fixtures import *  # noqa: F401,F403
from train_fixtures import only_run, train_args


# ---------------------------------------------------------------- schedules

def test_cosine_linear_onecycle_and_warmup_follow_their_formulas_every_iteration():
    from gluonfuse.train.schedule import IterationSchedule, StepSchedule, make_schedule

    cos = make_schedule("cosine", 0.1, 10, 4)
    for epoch in range(10):
        for it in range(4):
            t = (epoch + it / 4) / 10
            assert cos(epoch, it) == pytest.approx(0.05 * (1 + math.cos(math.pi * t)), abs=1e-15)
    lin = make_schedule("linear", 0.2, 4, 5)
    assert [lin(1, i) for i in range(5)] == pytest.approx([0.2 * (1 - (1 + i / 5) / 4) for i in range(5)])
    one = make_schedule("onecycle", 0.1, 10, 1)
    assert one(0) == pytest.approx(0.1 / 25) and one(3) == pytest.approx(0.1) and one(10) == pytest.approx(0)
    warm = make_schedule("cosine", 0.1, 10, 2, warmup_epochs=2, warmup_lr=0.01)
    assert [warm(0, 0), warm(0, 1), warm(1, 0), warm(1, 1)] == pytest.approx([0.01, 0.0325, 0.055, 0.0775])
    assert warm(2, 0) == pytest.approx(0.1) and warm(6, 0) == pytest.approx(0.05)
    # step with warm-up: the recipe's drops once the warm-up is over
    step = make_schedule("step", 0.1, 10, 2, steps=(5,), warmup_epochs=1)
    assert isinstance(step, IterationSchedule)
    assert [step(0, 0), step(0, 1), step(1, 0), step(5, 0)] == pytest.approx([0, 0.05, 0.1, 0.01])
    # nothing asked: the recipe's schedule object of today
    assert make_schedule("step", 0.1, 10, 2, 0.1, (5,)) == StepSchedule(0.1, 0.1, (5,))


# ---------------------------------------------------------------- label smoothing, mixup, cutmix, cutout

def test_label_smoothing_loss_of_a_one_hot_prediction_is_the_closed_form():
    import mxnet as mx

    from gluonfuse.train.regularize import soft_cross_entropy_loss, soft_targets

    k, eps, big = 10, 0.1, 30.0
    logits = mx.nd.one_hot(mx.nd.array([3, 7]), k) * big
    label = mx.nd.array([3, 7])
    loss = soft_cross_entropy_loss()([logits, logits], soft_targets(label, k, eps)).asnumpy()
    log_z = math.log(math.exp(big) + k - 1)
    one = -((1 - eps + eps / k) * (big - log_z) + (k - 1) * eps / k * (0 - log_z))
    assert loss == pytest.approx([2 * one] * 2, rel=1e-5)  # an ensemble sums its outputs' losses


def _batch(n=6, size=8, seed=0):
    import mxnet as mx

    rng = np.random.RandomState(seed)
    return mx.nd.array(rng.randn(n, 3, size, size) + 3.0), mx.nd.array(rng.randint(0, 5, n))


def test_regularizer_off_draws_nothing_and_returns_the_batch_itself():
    from gluonfuse.train.regularize import BatchRegularizer

    reg = BatchRegularizer(5, mixup=0.0, cutmix=0.0)
    x, y = _batch()
    np.random.seed(1)
    data, targets, label = reg([x], [y])
    assert not reg.active and data[0] is x and targets[0] is y and label[0] is y
    assert np.random.rand() == np.random.RandomState(1).rand()  # the generator did not move


def test_mixup_mixes_data_and_targets_with_one_lambda_and_reports_the_dominant_label():
    from gluonfuse.train.regularize import BatchRegularizer

    x, y = _batch()
    np.random.seed(3)
    data, targets, label = BatchRegularizer(5, mixup=0.4).part(x, y)
    np.random.seed(3)
    np.random.rand()  # mix_prob's draw
    lam = np.random.beta(0.4, 0.4)
    order = np.random.permutation(6)
    want = lam * x.asnumpy() + (1 - lam) * x.asnumpy()[order]
    assert np.allclose(data.asnumpy(), want, atol=1e-5)
    onehot = np.eye(5)[y.asnumpy().astype(int)]
    assert np.allclose(targets.asnumpy(), lam * onehot + (1 - lam) * onehot[order], atol=1e-6)
    dominant = y.asnumpy() if lam >= 0.5 else y.asnumpy()[order]
    assert (label.asnumpy() == dominant).all()


def test_cutmix_pastes_one_box_and_weights_targets_by_area():
    from gluonfuse.train.regularize import BatchRegularizer

    x, y = _batch(size=16)
    for seed in range(5):
        np.random.seed(seed)
        data, targets, _ = BatchRegularizer(5, cutmix=1.0).part(x, y)
        changed = (data.asnumpy() != x.asnumpy()).any(axis=(0, 1))
        kept = 1 - changed.sum() / changed.size
        rows, cols = np.nonzero(changed)
        if rows.size:  # one rectangle
            assert changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
        own = np.eye(5)[y.asnumpy().astype(int)]
        moved = targets.asnumpy() - kept * own  # the partner's share
        assert np.allclose(moved.sum(axis=1), 1 - kept, atol=1e-5) or rows.size == 0


def test_cutout_leaves_exactly_one_square_of_mean_pixels_per_image():
    from gluonfuse.train.regularize import cutout

    x, _ = _batch(n=4, size=12)  # values around 3: no zeros of their own
    np.random.seed(0)
    out = cutout(x, 5).asnumpy()
    for image in out:
        zero = (image == 0).all(axis=0)
        rows, cols = np.nonzero(zero)
        assert zero.sum() == 25 and rows.ptp() == 4 and cols.ptp() == 4
        assert ((image == 0) == zero[None]).all()  # every channel erased together
    assert np.array_equal(out[out != 0], x.asnumpy()[out != 0])


def test_no_wd_bn_bias_exempts_gamma_beta_and_biases_only():
    import mxnet as mx

    from gluonfuse.models import get_model
    from gluonfuse.train.regularize import exempt_from_weight_decay

    net = get_model("resnet", depth=8, classes=10)
    net.initialize(ctx=mx.cpu())
    exempt = set(exempt_from_weight_decay(net))
    for name, p in net.collect_params().items():
        if p.grad_req == "null":  # running statistics: not trained at all
            continue
        decayed = name.endswith("_weight")
        assert (p.wd_mult == 1.0) == decayed and (name in exempt) == (not decayed)
    assert any(n.endswith("_gamma") for n in exempt) and any(n.endswith("_bias") for n in exempt)


def test_gradient_clipping_scales_every_device_to_the_norm():
    import mxnet as mx

    from gluonfuse.train.regularize import clip_global_norm

    params = []
    for i, shape in enumerate([(3,), (2, 2)]):
        p = mx.gluon.Parameter(f"p{i}", shape=shape)
        p.initialize(ctx=[mx.cpu(0), mx.cpu(1)])
        for g in p.list_grad():
            g[:] = 2.0
        params.append(p)
    norm = clip_global_norm(params, 1.0, scale=0.5)
    assert norm == pytest.approx(0.5 * 2 * math.sqrt(7))
    after = math.sqrt(sum(float((g.asnumpy() ** 2).sum()) for p in params for g in p.list_grad()[:1]))
    assert 0.5 * after == pytest.approx(1.0, rel=1e-5)
    assert all(np.array_equal(p.list_grad()[0].asnumpy(), p.list_grad()[1].asnumpy()) for p in params)


def test_ema_after_k_steps_is_the_explicit_average_and_survives_save_and_load(tmp_path):
    import mxnet as mx

    from gluonfuse.train.ema import WeightAverage

    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize(ctx=mx.cpu())
    ema, decay, seen = WeightAverage(net, 0.8, mx.cpu()), 0.8, []
    for k in range(4):
        net.weight.set_data(mx.nd.full((3, 4), float(k + 1) ** 2))
        seen.append(float(k + 1) ** 2)
        ema.update()
    # started at the first step's weights, then decay * average + (1 - decay) * weights
    want = seen[0] * decay ** 3 + sum((1 - decay) * decay ** (3 - i) * seen[i] for i in range(1, 4))
    assert np.allclose(ema.average["weight"].asnumpy(), want)
    ema.save(str(tmp_path / "ema.params"))
    copy = mx.gluon.nn.Dense(3, in_units=4)
    copy.load_parameters(str(tmp_path / "ema.params"))  # a plain .params file
    assert np.allclose(copy.weight.data().asnumpy(), want)
    again = WeightAverage(net, 0.8, mx.cpu())
    again.load(str(tmp_path / "ema.params"))
    assert np.allclose(again.average["weight"].asnumpy(), want)


# ---------------------------------------------------------------- through the command line

@pytest.mark.parametrize("flags, message", [
    (["--mixup", "-0.2"], "mixup must be >= 0"),
    (["--cutmix", "-1"], "cutmix must be >= 0"),
    (["--label-smoothing", "1"], "label-smoothing must be in [0, 1)"),
    (["--warmup-epochs", "2"], "warmup-epochs must be >= 0 and shorter than the run (2 epochs)"),
    (["--mix-prob", "0"], "mix-prob must be in (0, 1]"),
    (["--grad-clip", "-1"], "grad-clip must be >= 0"),
    (["--ema", "1"], "ema must be a decay in (0, 1)"),
    (["--ema", "-0.5"], "ema must be a decay in (0, 1)"),
    (["--lr-schedule", "cosin"], "lr-schedule 'cosin'. Did you mean 'cosine'?"),
])
def test_bad_option_values_are_one_line_exit_2(pattern_data, tmp_path, flags, message):
    proc = run_gluonfuse(*train_args(pattern_data, str(tmp_path), *flags))
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def test_ema_is_tested_recorded_checkpointed_and_exported_when_better(pattern_data, tmp_path):
    out = str(tmp_path / "runs")
    proc = run_gluonfuse(*train_args(pattern_data, out, "--ema", "0.5"))
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run(out)
    rows = _metrics(run_dir)
    assert all(0 <= float(r["ema_test_error"]) <= 1 for r in rows) and "EMA test error" in proc.stdout
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "epoch-0002.ema"))
    meta = json.load(open(os.path.join(run_dir, "export", "last-meta.json")))
    better = float(rows[-1]["ema_test_error"]) < float(rows[-1]["test_error"])
    assert meta["weights"] == ("ema" if better else "raw")
    assert json.load(open(os.path.join(run_dir, "export", "best-meta.json")))["weights"] == "raw"


def test_mixup_alpha_0_is_bit_identical_to_no_mixup(trained_run, pattern_data, tmp_path):
    out = str(tmp_path / "runs")
    proc = run_gluonfuse(*train_args(pattern_data, out, "--mixup", "0", "--cutmix", "0"))
    assert proc.returncode == 0, proc.stderr
    keys = ("train_loss", "train_error", "test_loss", "test_error")
    assert [[r[k] for k in keys] for r in _metrics(only_run(out))] == \
        [[r[k] for k in keys] for r in _metrics(trained_run[0])]


EVERY_OPTION = ["--lr-schedule", "cosine", "--warmup-epochs", "0.5", "--warmup-lr", "0.01",
                "--label-smoothing", "0.1", "--mixup", "0.2", "--cutmix", "1.0", "--mix-prob", "0.8",
                "--cutout", "8", "--no-wd-bn-bias", "--grad-clip", "5", "--ema", "0.9"]


@pytest.mark.slow
def test_resume_with_every_option_reproduces_the_uninterrupted_run(pattern_data, tmp_path):
    from test_train import _signal_after_first_epoch

    whole = str(tmp_path / "whole")
    proc = run_gluonfuse(*train_args(pattern_data, whole, *EVERY_OPTION))
    assert proc.returncode == 0, proc.stderr
    config = json.load(open(os.path.join(only_run(whole), "config.json")))
    assert config["lr_schedule"] == "cosine" and config["mixup"] == 0.2 and config["no_wd_bn_bias"] is True
    reference = _metrics(only_run(whole))
    out = str(tmp_path / "cut")
    assert _signal_after_first_epoch(train_args(pattern_data, out, *EVERY_OPTION), out,
                                     signal.SIGKILL) == -signal.SIGKILL
    resumed = run_gluonfuse("train", "--resume", only_run(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    rows = _metrics(only_run(out))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for got, want in zip(rows, reference):
        for key in ("lr", "train_loss", "train_error", "test_loss", "test_error", "ema_test_loss", "ema_test_error"):
            assert float(got[key]) == pytest.approx(float(want[key]), abs=1e-4), key


def test_resume_with_more_epochs_keeps_the_warmup_a_fraction_of_the_run(pattern_data, tmp_path):
    out = str(tmp_path / "runs")
    proc = run_gluonfuse(*train_args(pattern_data, out, "--lr-schedule", "cosine", "--warmup-epochs", "0.5"))
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run(out)
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert (config["warmup_epochs"], config["warmup_fraction"]) == (0.5, 0.25)
    resumed = run_gluonfuse("train", "--resume", run_dir, "--epochs", "4", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert (config["epochs"], config["warmup_epochs"], config["warmup_fraction"]) == (4, 1.0, 0.25)
    # a config.json written before warmup_fraction: the stored epochs give the fraction
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({k: v for k, v in config.items() if k != "warmup_fraction"}, f)
    resumed = run_gluonfuse("train", "--resume", run_dir, "--epochs", "6", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert (config["epochs"], config["warmup_epochs"], config["warmup_fraction"]) == (6, 1.5, 0.25)


# ---------------------------------------------------------------- the fast recipe

def test_the_fast_recipe_resolves_to_its_row_and_its_warmup_scales_with_the_epochs():
    from fractions import Fraction

    from gluonfuse.train.config import RECIPES, resolve_config

    row = RECIPES["fast"]
    for dataset, epochs in (("digits", 10), ("cifar10", row.epochs)):
        config = resolve_config("cross", dataset, recipe="fast")
        assert (config.optimizer, config.lr, config.batch_size, config.wd, config.momentum, config.epochs) == \
            (row.optimizer, row.lr, row.batch_size, row.wd, row.momentum, epochs)
        assert (config.lr_schedule, config.label_smoothing, config.ema, config.cutout) == \
            (row.lr_schedule, row.label_smoothing, row.ema, row.cutout)
        assert config.warmup_epochs == float(Fraction(row.warmup) * epochs) > 0
    for epochs in (5, 7, 40):
        config = resolve_config("cross", "digits", recipe="fast", overrides={"epochs": epochs})
        assert config.warmup_epochs == pytest.approx(epochs * float(Fraction(row.warmup)))
    # the published recipes stay as they were: none of the later options is on
    assert all((r.lr_schedule, r.warmup, r.label_smoothing, r.ema, r.cutout) == ("step", "0", 0, 0, 0)
               for name, r in RECIPES.items() if name != "fast")


def test_explicit_flags_override_the_fast_recipe():
    from gluonfuse.train.config import resolve_config

    given = {"lr": 0.05, "lr_schedule": "onecycle", "warmup_epochs": 0.0, "label_smoothing": 0.0, "ema": 0.99,
             "cutout": 4, "batch_size": 32, "epochs": 6}
    config = resolve_config("cross", "digits", recipe="fast", overrides=given)
    assert {k: getattr(config, k) for k in given} == given


@pytest.mark.slow
def test_the_fast_recipe_trains_an_epoch_of_digits_end_to_end(tmp_path):
    out = str(tmp_path / "runs")
    proc = run_gluonfuse("train", "--network", "cross", "--depth", "14", "--dataset", "digits", "--recipe", "fast",
                         "--data-dir", str(tmp_path / "digits"), "--epochs", "1", "--seed", "0", "--out", out,
                         "--quiet")
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run(out)
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert (config["recipe"], config["lr_schedule"], config["warmup_epochs"], config["label_smoothing"]) == \
        ("fast", "cosine", 0.2, 0.1)
    (row,) = _metrics(run_dir)
    assert 0 <= float(row["test_error"]) <= 1 and math.isfinite(float(row["train_loss"]))


def test_results_group_by_the_new_options_with_older_runs_at_their_defaults(tmp_path):
    import shutil

    from gluonfuse.results import group_runs
    from gluonfuse.train.rundir import load_run

    old = os.path.join(os.path.dirname(__file__), "fixtures", "runs", "fractalnet_c2_b2_patterns_1")
    new = str(tmp_path / "smoothed")
    shutil.copytree(old, new)
    with open(os.path.join(new, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(new, "config.json"), "w") as f:
        json.dump(dict(config, label_smoothing=0.1, mixup=0.2), f)
    groups = group_runs([load_run(old), load_run(new)], "label_smoothing,mixup")
    assert [g.key for g in groups] == [(0.0, 0.0), (0.1, 0.2)]


def test_tensorboard_logs_iterations_epochs_graph_and_histograms_and_results_exports_runs(pattern_data, tmp_path):
    from gluonfuse.train.tensorboard import read_events, scalars

    out = str(tmp_path / "runs")
    proc = run_gluonfuse(*train_args(pattern_data, out, "--tensorboard", "--histogram-every", "2",
                                     "--lr-schedule", "cosine", "--ema", "0.5"))
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run(out)
    found = scalars(os.path.join(run_dir, "tb"))
    rows = _metrics(run_dir)
    # 160 images in batches of 16: 10 iterations an epoch, each but the last read back one batch late
    assert [s for s, _ in found["train/lr"]] == [s for s in range(20) if s % 10 != 9]
    assert found["train/lr"][0][1] == pytest.approx(0.1) and found["train/lr"][-1][1] < 0.01
    for column, tag in (("test_error", "test/error"), ("train_error", "train/error"),
                        ("ema_test_error", "ema/test_error")):
        assert [v for _, v in found[tag]] == pytest.approx([float(r[column]) for r in rows], abs=1e-6)
    events = [e for _, e in read_events(os.path.join(run_dir, "tb"))]
    assert sum(1 for e in events if e.graph_def) == 1
    histograms = {v.tag for e in events for v in e.summary.value if v.HasField("histo")}
    assert any(t.endswith("_weight") for t in histograms) and all(e.step == 2 for e in events
                                                                 if any(v.HasField("histo") for v in e.summary.value))
    tb = str(tmp_path / "tb")
    proc = run_gluonfuse("results", out, "--tensorboard", tb)
    assert proc.returncode == 0, proc.stderr
    exported = scalars(os.path.join(tb, os.path.basename(run_dir)))
    assert exported["test/error"] == [(int(r["epoch"]), pytest.approx(float(r["test_error"]), abs=1e-6)) for r in rows]


def test_tensorboard_without_tensorboardx_is_one_line(monkeypatch):
    import builtins

    from gluonfuse.train.tensorboard import summary_writer

    real_import = builtins.__import__

    def no_tensorboardx(name, *args, **kwargs):
        if name.startswith("tensorboardX"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    with pytest.raises(ValueError, match=r"needs tensorboardX: pip install 'gluonfuse\[tensorboard\]'"):
        summary_writer("unused")


@pytest.mark.parametrize("network, model_kwargs, recipe", [
    ("ensemble", {"depth": 11}, None),
    ("fractalnet", {"columns": 2, "blocks": 2, "widths": [8, 16]}, "fractal"),
])
def test_every_option_trains_an_ensemble_and_fractalnet(pattern_data, tmp_path, network, model_kwargs, recipe):
    from gluonfuse.train.config import resolve_config
    from gluonfuse.train.session import train

    options = {"epochs": 1, "batch_size": 32, "seed": 0, "out_dir": str(tmp_path), "lr_schedule": "onecycle",
               "warmup_epochs": 0.5, "label_smoothing": 0.1, "mixup": 0.2, "cutmix": 1.0, "cutout": 8,
               "no_wd_bn_bias": True, "grad_clip": 5.0, "ema": 0.9}
    conf = resolve_config(network, "patterns", data_dir=pattern_data, recipe=recipe, model_kwargs=model_kwargs,
                          overrides=options, contexts=["cpu(0)", "cpu(1)"])
    run_dir = train(conf, quiet=True, echo=lambda *a, **k: None)["run_dir"]
    row = _metrics(run_dir)[0]
    assert 0 <= float(row["train_error"]) <= 1 and 0 <= float(row["ema_test_error"]) <= 1
    with open(os.path.join(run_dir, "members.csv")) as f:
        members = list(csv.DictReader(f))
    # the ensemble's 8 members, FractalNet's deepest column, tested as without the options
    if network == "fractalnet":
        assert [m["name"] for m in members] == ["column2"]
    else:
        assert sorted(int(m["member"]) for m in members) == list(range(8))


@pytest.mark.slow
def test_every_option_in_a_distributed_job_keeps_the_workers_identical(pattern_data, tmp_path):
    from test_dist import ONE_THREAD, _digests, launch_args

    out = str(tmp_path / "runs")
    proc = run_gluonfuse(*launch_args(pattern_data, out, "--epochs", "2", "--kvstore", "dist_sync", *EVERY_OPTION),
                         timeout=600, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = only_run(out)
    digests = _digests(run_dir)
    assert sorted(digests) == [0, 1] and all(d[0] == d[1] for d in digests.values()), digests
    assert [r["epoch"] for r in _metrics(run_dir)] == ["1", "2"] and _metrics(run_dir)[-1]["ema_test_error"]
