"""FractalNet, RoR-3, pre-activation and wide ResNets: depth rules, errors, anchors, names, column API.

Forward, gradients, hybridize and export of every registered network are covered by the one
parametrised test over ``list_models()``; the stochastic layers by tests/test_stochastic.py.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from gluonfuse.models import count_params, get_entry, get_model, get_spec, list_models

FAMILIES = ("fractalnet", "ror3", "ror3_wrn", "preresnet", "wrn")
PRESETS = [n for n in list_models(kind="preset") if get_entry(n).family in FAMILIES]
# no paper states a count for these two; docs/anchors.md#computed-counts lists the figures pinned here
COMPUTED = {"preresnet1001": 10_327_706, "ror3_wrn40_4": 8_995_290}


def test_every_requested_network_is_registered():
    assert set(FAMILIES) <= set(list_models(kind="family"))
    assert sorted(PRESETS) == sorted([
        "fractalnet20", "fractalnet40", "ror3_56", "ror3_110", "ror3_164", "ror3_wrn40_2", "ror3_wrn40_4",
        "ror3_wrn58_4", "preresnet110", "preresnet164", "preresnet1001", "wrn16_4", "wrn28_10", "wrn40_4"])


@pytest.mark.parametrize("name", PRESETS)
def test_preset_parameter_count_equals_spec(name):
    entry = get_entry(name)
    if name in COMPUTED:
        assert not entry.anchors
        assert count_params(get_model(name)) == COMPUTED[name]
        return
    assert entry.anchors, f"{name} has no anchor (docs/anchors.md#anchor-table)"
    for kwargs, count in entry.anchors:
        assert count_params(get_model(name, **kwargs)) == count, kwargs


@pytest.mark.parametrize("family", FAMILIES)
def test_family_anchors(family):
    for kwargs, count in get_entry(family).anchors:
        assert count_params(get_model(family, **kwargs)) == count, kwargs


@pytest.mark.parametrize("preset,family,kwargs", [
    ("fractalnet20", "fractalnet", {"depth": 20}),
    ("fractalnet40", "fractalnet", {"columns": 4}),
    ("ror3_110", "ror3", {"depth": 110}),
    ("ror3_wrn58_4", "ror3_wrn", {"depth": 58, "widen_factor": 4}),
    ("preresnet164", "preresnet", {"depth": 164, "bottleneck": True}),
    ("wrn28_10", "wrn", {"depth": 28, "widen_factor": 10}),
])
def test_preset_and_family_build_the_same_network(preset, family, kwargs):
    a, b = get_model(preset), get_model(family, **kwargs)
    assert a.spec == b.spec
    assert list(a.collect_params().keys()) == list(b.collect_params().keys())
    # kwargs() rebuilds the spec through the family
    assert get_spec(family, **a.spec.kwargs()) == a.spec


@pytest.mark.parametrize("name,structure", [
    ("ror3_56", {"blocks_per_stage": [8, 8, 8]}),
    ("ror3_110", {"blocks_per_stage": [17, 17, 17]}),
    ("ror3_164", {"blocks_per_stage": [26, 26, 26]}),
    ("ror3_wrn40_2", {"blocks_per_stage": [6, 6, 6], "widths": [32, 64, 128]}),
    ("ror3_wrn58_4", {"blocks_per_stage": [9, 9, 9], "widths": [64, 128, 256]}),
    ("preresnet110", {"block": "basic", "blocks_per_stage": [18, 18, 18], "widths": [16, 32, 64]}),
    ("preresnet164", {"block": "bottleneck", "blocks_per_stage": [18, 18, 18], "widths": [64, 128, 256]}),
    ("preresnet1001", {"block": "bottleneck", "blocks_per_stage": [111, 111, 111]}),
    ("wrn16_4", {"blocks_per_stage": [2, 2, 2], "widths": [64, 128, 256]}),
    ("wrn28_10", {"blocks_per_stage": [4, 4, 4], "widths": [160, 320, 640]}),
    ("fractalnet20", {"columns": 3, "longest_path": 20, "widths": [64, 128, 256, 512, 512],
                      "dropout": [0.0, 0.1, 0.2, 0.3, 0.4], "join_inputs_per_block": [2, 3]}),
    ("fractalnet40", {"columns": 4, "longest_path": 40, "join_inputs_per_block": [2, 3, 2, 4]}),
])
def test_structure_follows_spec(name, structure):
    described = get_spec(name).describe()
    for key, value in structure.items():
        assert described[key] == value, key


def test_fractal_columns_hold_2_to_the_c_minus_1_units():
    net = get_model("fractalnet", columns=4, blocks=2, widths=[2, 2])
    for block in net.fractal_blocks:
        assert [len(block.column(c)) for c in (1, 2, 3, 4)] == [1, 2, 4, 8]
    # the first conv of every column maps the block's input width to its output width
    names = net.collect_params()
    assert names["fractalnet_b1_c4_u1_conv_weight"].shape == (2, 3, 3, 3)
    assert names["fractalnet_b1_c4_u2_conv_weight"].shape == (2, 2, 3, 3)
    assert names["fractalnet_b2_c1_u1_conv_weight"].shape == (2, 2, 3, 3)


@pytest.mark.parametrize("name,param", [
    ("fractalnet20", "fractalnet_b5_c3_u4_bn_gamma"),
    ("ror3_56", "ror3_root_conv_weight"),
    ("ror3_56", "ror3_g2_mid_bn_beta"),
    ("ror3_56", "ror3_g2_b0_short_conv_weight"),
    ("ror3_wrn40_2", "ror3_wrn_g3_b5_conv2_weight"),
    ("preresnet164", "preresnet_g1_b0_proj_weight"),
    ("preresnet164", "preresnet_g3_b17_conv3_weight"),
    ("wrn16_4", "wrn_g1_b0_bn1_gamma"),
    ("wrn16_4", "wrn_post_bn_beta"),
])
def test_parameter_names_are_stable(name, param):
    # parameter names are API: saved weights must load back
    assert param in get_model(name).collect_params().keys()


# ---------------------------------------------------------------- depth rules and errors

@pytest.mark.parametrize("family,kwargs,words", [
    ("wrn", {"depth": 30}, ["6n + 4", "28 and 34"]),
    ("wrn", {"depth": 5}, ["10 (the smallest)"]),
    ("preresnet", {"depth": 100}, ["6n + 2", "98 and 104"]),
    ("preresnet", {"depth": 160, "bottleneck": True}, ["9n + 2", "155 and 164"]),
    ("ror3", {"depth": 52}, ["6n + 8", "50 and 56"]),
    ("ror3", {"depth": 10}, ["14 (the smallest)"]),
    ("ror3_wrn", {"depth": 41}, ["6n + 4", "40 and 46"]),
    ("fractalnet", {"depth": 30}, ["blocks * 2^(columns-1)", "20 and 40"]),
    ("fractalnet", {"depth": 10, "blocks": 3}, ["6 and 12"]),
])
def test_bad_depths_name_the_nearest_valid_ones(family, kwargs, words):
    with pytest.raises(ValueError) as err:
        get_model(family, **kwargs)
    for word in words:
        assert word in str(err.value), str(err.value)


@pytest.mark.parametrize("family,kwargs,words", [
    ("ror3", {"widen_factor": 2}, ["ror3_wrn"]),
    ("fractalnet", {"blocks": 6}, ["1..5"]),
    ("fractalnet", {"column": 4}, ["1..3"]),
    ("fractalnet", {"columns": 3, "depth": 40}, ["4 columns"]),
    ("fractalnet", {"widths": [64, 128]}, ["5 values"]),
    ("fractalnet", {"dropout": 1.0}, ["dropout", "[0, 1)"]),
    ("fractalnet", {"drop_path": -0.1}, ["drop_path"]),
    ("fractalnet", {"global_prob": 1.5}, ["global_prob", "[0, 1]"]),
    ("wrn", {"widen_factor": 0}, ["widen_factor"]),
    ("wrn", {"dropout": "0.3"}, ["dropout"]),
    ("preresnet", {"bottleneck": "yes"}, ["bottleneck"]),
    ("ror3_wrn", {"stochastic_depth": 1.0}, ["stochastic_depth"]),
    ("preresnet", {"widen_factor": 2}, ["accepts", "depth", "bottleneck"]),
])
def test_bad_arguments_say_what_would_be_right(family, kwargs, words):
    with pytest.raises(ValueError) as err:
        get_model(family, **kwargs)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_a_preset_refuses_to_change_what_it_fixes():
    with pytest.raises(ValueError, match="fractalnet20.*fixes columns"):
        get_model("fractalnet20", columns=4)
    # what a preset leaves open stays open
    assert get_model("ror3_wrn58_4", stochastic_depth=0.5).spec.survivals()[-1] == 0.5
    assert get_model("wrn28_10", dropout=0.3).spec.dropout == 0.3


def test_family_defaults_are_the_documented_networks():
    assert get_spec("fractalnet") == get_spec("fractalnet20")
    assert get_spec("ror3") == get_spec("ror3_56")
    assert get_spec("ror3_wrn") == get_spec("ror3_wrn40_2")
    assert get_spec("preresnet") == get_spec("preresnet110")
    assert get_spec("wrn") == get_spec("wrn16_4")


def test_stochastic_depth_survival_is_linear_from_one_to_one_minus_p():
    spec = get_spec("ror3_56", stochastic_depth=0.5)
    survivals = spec.survivals()
    assert len(survivals) == 24 and survivals[0] == 1.0 and survivals[-1] == 0.5
    assert np.allclose(np.diff(survivals), -0.5 / 23)
    assert get_spec("ror3_56").survivals() == [1.0] * 24


# ---------------------------------------------------------------- single-column API

def small_fractal():
    net = get_model("fractalnet", columns=3, blocks=2, widths=[3, 5], dropout=[0.0, 0.1])
    net.initialize(mx.init.Xavier())
    return net


def test_column_net_shares_the_parameters():
    net = small_fractal()
    full = net.collect_params()
    for c in (1, 2, 3):
        alone = net.column_net(c)
        assert alone.spec.column == c and alone.spec.name == f"fractalnet_c3_b2_col{c}"
        params = alone.collect_params()
        assert set(params.keys()) < set(full.keys())
        assert all(params[k] is full[k] for k in params.keys())
        assert all(f"_c{c}_" in k or "_head_" in k for k in params.keys())
    assert net.column_net().spec.column == 3  # the deepest by default
    # parameters are shared, not copied: a change to the full net shows in its columns
    x = nd.random.normal(shape=(1, 3, 8, 8))
    before = net.column_net(2)(x).asnumpy()
    full["fractalnet_head_fc_bias"].set_data(full["fractalnet_head_fc_bias"].data() + 1)
    np.testing.assert_allclose(net.column_net(2)(x).asnumpy(), before + 1, rtol=1e-5)


def test_column_counts_add_up_to_the_full_net():
    spec = get_spec("fractalnet20")
    full = count_params(get_model("fractalnet20"))
    head = 512 * 10 + 10
    columns = [count_params(get_model("fractalnet20", column=c)) for c in (1, 2, 3)]
    assert sum(c - head for c in columns) + head == full
    assert [get_spec("fractalnet20", column=c).describe()["longest_path"] for c in (1, 2, 3)] == [5, 10, 20]
    assert spec.column is None


def test_column_argument_is_validated_and_rebuilds_through_kwargs():
    spec = get_spec("fractalnet", column=2, columns=4)
    assert get_spec("fractalnet", **spec.kwargs()) == spec
    with pytest.raises(ValueError, match="column must be 1..4"):
        get_spec("fractalnet", column=5, columns=4)
