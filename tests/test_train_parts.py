"""The trainer's parts: recipes and schedules, initialisation, padding, exact evaluation, ensembles, NaN stops."""
import json
import os

import numpy as np
import pytest

from train_fixtures import *  # noqa: F401,F403 - fixtures
from train_fixtures import only_run, train_args


# ---------------------------------------------------------------- recipes and schedules

def test_fusion_recipe_is_the_authors():
    from gluonfuse.train.config import resolve_config

    c = resolve_config("cross", "cifar10")
    assert (c.optimizer, c.lr, c.lr_factor, c.momentum, c.wd, c.batch_size, c.epochs, c.aug_type) == \
        ("nag", 0.1, 0.1, 0.9, 1e-4, 64, 400, 1)
    assert c.lr_steps == [200, 300, 350] and c.data_dir == "data/cifar10"
    s = resolve_config("cross", "svhn")
    assert (s.epochs, s.aug_type, s.lr_steps) == (40, 0, [20, 30, 35])


@pytest.mark.parametrize("recipe, steps, factor, epochs, batch, wd", [
    ("preact", [81, 122], 0.1, 164, 128, 1e-4),
    ("wrn", [60, 120, 160], 0.2, 200, 128, 5e-4),
    ("wrn_svhn", [80, 120], 0.1, 160, 128, 5e-4),
    ("ror", [250, 375], 0.1, 500, 128, 1e-4),
    ("fractal", [200, 300, 350, 375], 0.1, 400, 100, 0.0),
])
def test_family_recipes(recipe, steps, factor, epochs, batch, wd):
    from gluonfuse.train.config import resolve_config

    c = resolve_config("resnet", "cifar10", recipe=recipe)
    assert (c.lr_steps, c.lr_factor, c.epochs, c.batch_size, c.wd) == (steps, factor, epochs, batch, wd)


def test_library_errors_name_arguments_and_commands_map_them_to_flags():
    from gluonfuse.errors import ArgumentError
    from gluonfuse.train.config import resolve_config

    with pytest.raises(ArgumentError, match="^epochs must be a positive integer, got 0$") as info:
        resolve_config("cross", "cifar10", overrides={"epochs": 0})
    assert info.value.with_flags({"epochs": "--epochs"}) == "--epochs must be a positive integer, got 0"
    error = ArgumentError("dtype float16 cannot use kvstore dist_async; start with --kvstore dist_sync and "
                          "dtypes", "dtype", "kvstore")
    assert error.with_flags({"dtype": "--dtype", "kvstore": "--kvstore"}) == \
        "--dtype float16 cannot use --kvstore dist_async; start with --kvstore dist_sync and dtypes"
    assert isinstance(error, ValueError)


def test_seed_is_fresh_per_run_unless_given():
    from gluonfuse.train.config import resolve_config

    seeds = {resolve_config("cross", "cifar10").seed for _ in range(4)}
    assert len(seeds) > 1
    assert resolve_config("cross", "cifar10", overrides={"seed": 7}).seed == 7


def test_overrides_and_schedule():
    from gluonfuse.train.config import resolve_config
    from gluonfuse.train.schedule import lr_at

    c = resolve_config("cross", "cifar10", overrides={"epochs": 8, "lr": 0.05, "batch_size": None})
    assert c.lr_steps == [4, 6, 7] and c.lr == 0.05 and c.batch_size == 64
    assert [lr_at(e, 0.1, 0.1, [4, 6, 7]) for e in (0, 3, 4, 5, 6, 7)] == \
        pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.0001])
    c = resolve_config("cross", "cifar10", overrides={"lr_steps": "10,20"})
    assert c.lr_steps == [10, 20]


OLD_CONFIG = os.path.join(os.path.dirname(__file__), "fixtures", "runs", "fractalnet_c2_b2_patterns_1", "config.json")
DERIVED = {"classes", "mean", "std", "input_shape", "num_workers"}
# options newer than that run, at their defaults (off)
NEWER_OPTIONS = {"lr_schedule": "step", "warmup_epochs": 0.0, "warmup_lr": 0.0, "label_smoothing": 0.0, "mixup": 0.0,
                 "cutmix": 0.0, "mix_prob": 1.0, "cutout": 0, "no_wd_bn_bias": False, "grad_clip": 0.0,
                 "ema": 0.0, "tensorboard": None, "histogram_every": 10}


def test_the_config_holds_choices_only_and_reads_old_config_files():
    from gluonfuse.errors import DataError
    from gluonfuse.train.config import TrainConfig, resolve_config

    assert not DERIVED & set(resolve_config("cross", "cifar10").to_dict())
    with open(OLD_CONFIG) as f:
        old = json.load(f)
    loaded = TrainConfig.from_dict(old).to_dict()
    assert {k: loaded[k] for k in old if k not in DERIVED} == {k: v for k, v in old.items() if k not in DERIVED}
    # options added since that run was written take their defaults, which are off
    assert {k: v for k, v in loaded.items() if k not in old} == NEWER_OPTIONS
    with pytest.raises(DataError, match="config.json lacks lr, seed"):
        TrainConfig.from_dict({k: v for k, v in old.items() if k not in ("lr", "seed")})


def test_the_dataset_and_the_job_decide_the_rest(pattern_data):
    from gluonfuse.train.config import resolve_config
    from gluonfuse.train.plan import plan_run, read_facts, run_record

    config = resolve_config("cross", "patterns", data_dir=pattern_data, model_kwargs={"depth": 14},
                            overrides={"batch_size": 32, "test_batch_size": 10})
    facts = read_facts(config)
    assert (facts.classes, facts.input_shape, facts.stored_size) == (10, (3, 32, 32), 32)
    assert (facts.train_records, facts.test_records) == (160, 50)
    assert facts.model_kwargs == {"depth": 14, "widen_factor": 1, "classes": 10}
    assert config.model_kwargs == {"depth": 14}  # the user's choice is left as it was
    plan = plan_run(config, facts, workers=2, rank=1, devices=1)
    assert (plan.batch_size, plan.test_batch_size, plan.steps) == (16, 5, 5)
    assert (plan.train_part, plan.test_part) == ((80, 160), (25, 50))
    with open(OLD_CONFIG) as f:
        # config.json keeps its keys and adds the newer options' and the warm-up as a fraction of the run
        assert set(run_record(config, facts, 2)) == set(json.load(f)) | set(NEWER_OPTIONS) | {"warmup_fraction"}
    with pytest.raises(ValueError, match="does not match the dataset"):
        read_facts(resolve_config("cross", "patterns", data_dir=pattern_data, model_kwargs={"classes": 5}))


def test_device_names_and_gpu_error():
    import mxnet as mx

    from gluonfuse.train.config import device_names, make_contexts

    assert device_names() == ["cpu(0)"]
    assert device_names(cpus=3) == ["cpu(0)", "cpu(1)", "cpu(2)"]
    assert device_names(gpus="0,1") == ["gpu(0)", "gpu(1)"]
    assert make_contexts(["cpu(0)", "cpu(1)"]) == [mx.cpu(0), mx.cpu(1)]
    for bad in ({"gpus": "a"}, {"cpus": 0 - 1}, {"gpus": "0", "cpus": 2}):
        with pytest.raises(ValueError):
            device_names(**bad)
    if mx.context.num_gpus() == 0:
        with pytest.raises(ValueError, match="no GPU"):
            make_contexts(["gpu(0)"])


# ---------------------------------------------------------------- initialisation and optimizer

def test_mixed_xavier_init_and_weight_decay_on_everything():
    import mxnet as mx

    from gluonfuse.models import get_model
    from gluonfuse.train.step import initialize, make_trainer

    mx.random.seed(0)
    net = initialize(get_model("cross", depth=26, widen_factor=2), [mx.cpu()])
    params = net.collect_params()
    fc = [p for n, p in params.items() if n.endswith("fc_weight")]
    assert len(fc) == 1
    w = fc[0].data().asnumpy()
    bound = np.sqrt(1.0 / w.shape[1])  # Xavier uniform, 'in', magnitude 1
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    conv = params["cross_g3_b0_a_u2_conv_weight"].data().asnumpy()  # 128 x 128 x 3 x 3
    assert conv.std() == pytest.approx(np.sqrt(2.0 / (conv.shape[1] * 9)), rel=0.05)  # gaussian, 'in', 2
    for name, p in params.items():
        if name.endswith("gamma"):
            assert (p.data().asnumpy() == 1).all()
        if name.endswith("beta") or name.endswith("bias"):
            assert (p.data().asnumpy() == 0).all()
    trainer = make_trainer(net, "nag", 0.1, 1e-4, 0.9, "device")
    assert trainer._optimizer.wd == 1e-4 and type(trainer._optimizer).__name__ == "NAG"
    trained = {p.name for p in trainer._params}
    assert any(n.endswith("gamma") for n in trained) and any(n.endswith("beta") for n in trained)
    assert all(p.wd_mult == 1 for p in trainer._params)


def _tiny_step(loss=None, optimizer="sgd", kvstore="device"):
    import mxnet as mx

    from gluonfuse.models import get_model
    from gluonfuse.train.step import Step, initialize, make_trainer

    mx.random.seed(0)
    net = initialize(get_model("resnet", depth=8, classes=10), [mx.cpu()])
    net.hybridize(static_alloc=True, static_shape=True)
    return Step(net, make_trainer(net, optimizer, 0.1, 0.0, 0.9, kvstore), [mx.cpu()], loss=loss)


def test_a_training_pass_asks_the_schedule_every_iteration_and_transforms_batches(pattern_data):
    from gluonfuse.train.data import record_iter
    from gluonfuse.train.epoch import TrainingPass
    from gluonfuse.train.step import cross_entropy_loss

    softmax_ce, labels, rates = cross_entropy_loss(), [], []

    def loss(outputs, label):
        labels.append(float(label.sum().asscalar()))
        return softmax_ce(outputs, label)

    step = _tiny_step(loss)

    def zero_labels(data, label):
        rates.append(step.trainer.learning_rate)
        return data, [y * 0 for y in label], label

    it = record_iter(os.path.join(pattern_data, "train.rec"), 40, (3, 32, 32), [0] * 3, [1] * 3)
    result, seconds, speed = TrainingPass(step, 10, transform=zero_labels)(0, it, lr=lambda i: 0.1 / (i + 1))
    assert rates == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025])
    assert labels == [0.0] * 4  # the loss saw the transformed batch
    assert result["count"] == 160 and seconds > 0 and speed > 0


def test_the_step_schedule_and_its_server_form():
    from gluonfuse.train.schedule import StepSchedule
    from gluonfuse.train.step import schedule_on_servers

    schedule = StepSchedule(0.1, 0.1, (2, 3))
    assert [schedule(e, i) for e, i in ((0, 0), (1, 7), (2, 0), (3, 9))] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert StepSchedule(0.1, 0.1, ()).on_servers(10) is None
    # dist_async: updates are counted, 10 per epoch; a run resumed after update 25 is in its third epoch
    trainer = schedule_on_servers(_tiny_step(optimizer="nag", kvstore="local").trainer, schedule.on_servers(10), 25)
    assert trainer.learning_rate == pytest.approx(0.01) and trainer._optimizer.begin_num_update == 25


# ---------------------------------------------------------------- input pipeline

def test_pad_crop_pads_with_exact_zeros_and_is_seeded():
    import mxnet as mx

    from gluonfuse.train.data import PadCrop

    class Ones:
        batch_size, provide_data, provide_label = 64, None, None

        def __next__(self):
            return mx.io.DataBatch([mx.nd.ones((64, 3, 32, 32))], [mx.nd.zeros((64,))], pad=3)

    a = next(PadCrop(Ones(), 4, seed=7))
    b = next(PadCrop(Ones(), 4, seed=7))
    x = a.data[0].asnumpy()
    assert a.pad == 3 and x.shape == (64, 3, 32, 32)
    assert set(np.unique(x)) <= {0.0, 1.0} and (x == 0).any()
    assert np.array_equal(x, b.data[0].asnumpy())
    # each image keeps a (32-|dy|) x (32-|dx|) block of ones, the same in every channel
    ones = (x[:, 0] == 1).sum(axis=(1, 2))
    possible = {(32 - abs(dy)) * (32 - abs(dx)) for dy in range(-4, 5) for dx in range(-4, 5)}
    assert set(ones) <= possible and len(set(ones)) >= 5
    assert (x[:, 0] == x[:, 1]).all()


def test_imagenet_style_augmentation_builds(pattern_data):
    from gluonfuse.train.data import record_iter

    it = record_iter(os.path.join(pattern_data, "train.rec"), 8, (3, 24, 24), [120] * 3, [60] * 3, aug_type=2,
                     shuffle=True, seed=3)
    x = next(iter(it)).data[0].asnumpy()
    assert x.shape == (8, 3, 24, 24) and np.isfinite(x).all() and x.std() > 0.1


def test_missing_or_broken_dataset_is_a_data_error(tmp_path, pattern_data):
    from gluonfuse.errors import DataError
    from gluonfuse.data.meta import read_meta
    from gluonfuse.train.data import check_dataset_dir

    with pytest.raises(DataError, match="not found"):
        check_dataset_dir(str(tmp_path))
    (tmp_path / "train.rec").write_bytes(b"")
    with pytest.raises(DataError, match="test.rec"):
        check_dataset_dir(str(tmp_path))
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="meta.json"):
        read_meta(str(tmp_path))
    assert read_meta(pattern_data)["num_classes"] == 10


# ---------------------------------------------------------------- exact evaluation

def _decode_all(rec_path, mean, std):
    import cv2
    import mxnet as mx

    reader = mx.recordio.MXRecordIO(rec_path, "r")
    images, labels = [], []
    while True:
        item = reader.read()
        if item is None:
            break
        header, buf = mx.recordio.unpack(item)
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32)
        images.append(((img - mean) / std).transpose(2, 0, 1))
        labels.append(int(header.label))
    return np.stack(images), np.array(labels)


def test_evaluate_counts_exactly_the_test_set(pattern_data):
    """Padded last batches, uneven device splits: the numbers equal a plain numpy pass over all records."""
    import mxnet as mx

    from gluonfuse.models import get_model
    from gluonfuse.data.meta import read_meta
    from gluonfuse.train.data import normalisation, record_iter
    from gluonfuse.train.evaluate import evaluate
    from gluonfuse.train.step import initialize

    meta = read_meta(pattern_data)
    mean, std = normalisation("patterns", meta)
    contexts = [mx.cpu(0), mx.cpu(1)]
    mx.random.seed(1)
    net = initialize(get_model("resnet", depth=8, classes=10), contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    rec = os.path.join(pattern_data, "test.rec")
    res = evaluate(net, record_iter(rec, 15, (3, 32, 32), mean, std), contexts, 10, expected=50)
    x, y = _decode_all(rec, np.array(mean, np.float32), np.array(std, np.float32))
    logits = net(mx.nd.array(x, ctx=mx.cpu(0))).asnumpy().astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    rank = (logp > logp[np.arange(50), y][:, None]).sum(1)
    assert res["count"] == 50
    assert res["loss"] == pytest.approx(-logp[np.arange(50), y].mean(), abs=1e-5)
    assert res["error"] == pytest.approx((rank >= 1).mean())
    assert res["top5_error"] == pytest.approx((rank >= 5).mean())


def test_top5_is_undefined_for_five_classes_or_fewer():
    import mxnet as mx

    from gluonfuse.train.metrics import Meter, sample_stats

    m = Meter(classes=4)
    m.add([sample_stats([mx.nd.array([[1, 2, 3, 4], [4, 3, 2, 1]])], mx.nd.array([3, 3]))], 2)
    res = m.result()
    assert res["top5_error"] is None and res["error"] == 0.5 and res["count"] == 2


# ---------------------------------------------------------------- ensemble, NaN, digits

def test_ensemble_trains_all_members_and_reports_each(cli, pattern_data, tmp_path):
    out = str(tmp_path / "runs")
    args = train_args(pattern_data, out, "--epochs", "1", "--cpus", "1")
    args[args.index("cross")] = "ensemble"
    args[args.index("14")] = "5"  # fuse3's smallest depth: one conv per deep path
    result = cli(*args)
    assert result.exit_code == 0, result.output
    run_dir = only_run(out)
    from gluonfuse.train.rundir import load_run

    members = load_run(run_dir).members
    assert [m["name"] for m in members] == ["LLL", "LLR", "LRL", "LRR", "RLL", "RLR", "RRL", "RRR"]
    result = cli("eval", run_dir, "--json")
    res = json.loads(result.output)
    assert len(res["members"]) == 8
    assert [m["error"] for m in res["members"]] == pytest.approx([m["test_error"] for m in members], abs=1e-6)
    assert "member LLL: top-1 error" in cli("eval", run_dir).output


def test_fractalnet_is_tested_whole_and_by_its_deepest_column(cli, pattern_data, tmp_path):
    out = str(tmp_path / "runs")
    args = train_args(pattern_data, out, "--epochs", "1", "--recipe", "fractal", "--batch-size", "20")
    args[args.index("cross")] = "fractalnet"
    i = args.index("--depth")
    args[i:i + 2] = ["--arg", "columns=2", "--arg", "blocks=2", "--arg", "widths=[8,16]"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert "column 2:" in result.output
    run_dir = only_run(out)
    assert os.path.basename(run_dir) == "fractalnet_c2_b2_patterns_1"
    from gluonfuse.train.rundir import load_run

    run = load_run(run_dir)
    assert run.config["optimizer"] == "sgd" and run.config["lr"] == 0.02
    (col,) = run.members
    assert col["name"] == "column2"
    res = json.loads(cli("eval", run_dir, "--which", "last", "--column", "2", "--json").output)
    assert res["error"] == pytest.approx(col["test_error"], abs=1e-6)
    assert res["loss"] == pytest.approx(col["test_loss"], abs=1e-4)
    whole = json.loads(cli("eval", run_dir, "--which", "last", "--json").output)
    assert whole["error"] == pytest.approx(run.metrics[-1]["test_error"], abs=1e-6)
    assert cli("eval", run_dir, "--column", "3").exit_code == 2


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(cli, pattern_data, tmp_path, monkeypatch):
    import gluonfuse.train.epoch as epoch

    calls = {"n": 0}
    real = epoch.sample_stats

    def poisoned(outputs, label):
        calls["n"] += 1
        stats = real(outputs, label)
        return stats * float("nan") if calls["n"] > 22 else stats  # epoch 1: 10 batches x 2 devices

    monkeypatch.setattr(epoch, "sample_stats", poisoned)
    out = str(tmp_path / "runs")
    result = cli(*train_args(pattern_data, out, "--epochs", "3"))
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: non-finite training loss in epoch 2") and "epoch 1" in line
    run_dir = only_run(out)
    status = json.load(open(os.path.join(run_dir, "status.json")))
    assert status["state"] == "failed" and "non-finite" in status["message"]
    from gluonfuse.train.rundir import load_run

    run = load_run(run_dir)
    assert [r["epoch"] for r in run.metrics] == [1]
    net = run.build_network("last")
    assert all(np.isfinite(p.data().asnumpy()).all() for p in net.collect_params().values())
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "epoch-0001.states"))
    assert not os.path.exists(os.path.join(run_dir, "checkpoints", "epoch-0002.json"))


@pytest.mark.slow
def test_digits_is_prepared_on_the_fly_under_data(cli, tmp_path, monkeypatch):
    """The README's first command: no data yet, data/digits appears, one epoch trains and exports."""
    monkeypatch.chdir(tmp_path)
    result = cli("train", "--network", "cross", "--depth", "14", "--dataset", "digits", "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert os.path.isfile(tmp_path / "data" / "digits" / "meta.json")
    run_dir = only_run(str(tmp_path / "runs"))
    assert os.path.basename(run_dir) == "cross_d14_w1_digits_1"
    assert os.path.isfile(os.path.join(run_dir, "export", "best-symbol.json"))
    assert "Test error" in result.output


def test_count_records_reads_the_index_or_scans_and_reports_damage(tmp_path, pattern_data):
    import shutil

    from gluonfuse.errors import DataError
    from gluonfuse.train.data import count_records

    rec = tmp_path / "test.rec"
    shutil.copy(os.path.join(pattern_data, "test.rec"), rec)
    assert count_records(str(rec)) == 50  # no .idx: every record scanned
    shutil.copy(os.path.join(pattern_data, "test.idx"), tmp_path / "test.idx")
    assert count_records(str(rec)) == 50
    os.remove(tmp_path / "test.idx")
    with open(rec, "r+b") as f:  # cut the file inside its last record
        f.truncate(os.path.getsize(rec) - 10)
    with pytest.raises(DataError, match="truncated"):
        count_records(str(rec))


def test_stored_size_is_the_short_side_of_the_stored_images(pattern_data):
    from gluonfuse.data.meta import read_meta, stored_size

    assert stored_size(read_meta(pattern_data)) == 32
    assert stored_size({"image_shape": [3, 480, 640]}) == 480
    assert stored_size({}) is None and stored_size(None) is None
