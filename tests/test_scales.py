"""Folding scalar multiplications into weights (gluonfuse.deploy.scales), which lets cross's int8
graph stay int8 through its merges."""
import json

import mxnet as mx
import numpy as np
import pytest

from test_deploy import FAMILIES, TINY, _batch, _calibration, _net
from gluonfuse.deploy.fuse import outputs
from gluonfuse.deploy.graph import inference_graph, node_ops
from gluonfuse.deploy.quantize import quantize_network
from gluonfuse.deploy.scales import fold_scalars, folded_block

# the scalar multiplications each family's tiny network has, and how many fold away
FOLDED = {"cross": (3, 3), "cross_imagenet": (2, 2), "ror3": (2, 0), "ror3_wrn": (2, 0)}


def _ops(graph_text):
    return list(node_ops(graph_text).values())


@pytest.mark.parametrize("name", FAMILIES)
def test_folding_keeps_every_familys_outputs(name):
    net = _net(name, **TINY[name])
    graph = inference_graph(net)
    before = {k: p.data().asnumpy().copy() for k, p in net.collect_params().items()}
    block, _, removed = folded_block(net, graph)
    assert (_ops(graph).count("_mul_scalar"), removed) == FOLDED.get(name, (0, 0))
    x = _batch(net, n=4, seed=2)
    for a, b in zip(outputs(net, x), outputs(block, x)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    # the network itself is untouched: the folded graph has its own copy of the parameters
    assert all(np.array_equal(p.data().asnumpy(), before[k]) for k, p in net.collect_params().items())


def test_cross_folds_by_powers_of_two_and_computes_the_same_bits():
    net = _net("cross", depth=20)
    graph = inference_graph(net)
    params = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
    folded = fold_scalars(graph, params)
    assert folded.removed == _ops(graph).count("_mul_scalar") > 3 and "_mul_scalar" not in _ops(folded.graph)
    ratios = [folded.params[k] / params[k] for k in folded.params]
    factors = {float(r.flat[np.flatnonzero(params[k])[0]]) for k, r in zip(folded.params, ratios)}
    assert factors and all(np.log2(f) == round(np.log2(f)) for f in factors)  # exact in float32
    block, _, _ = folded_block(net, graph)
    x = _batch(net, n=4, seed=4)
    assert np.array_equal(outputs(block, x)[0], outputs(net, x)[0])


def _graph(sym):
    return json.dumps(json.loads(sym.tojson()))


def _run(graph_text, params, x):
    block = mx.gluon.SymbolBlock(mx.sym.load_json(graph_text), [mx.sym.var("data")])
    block.collect_params().load_dict({k: mx.nd.array(v) for k, v in params.items()}, ctx=mx.cpu())
    return block(mx.nd.array(x)).asnumpy()


def _conv_bn(data, name, fix_gamma=False):
    conv = mx.sym.Convolution(data, kernel=(3, 3), pad=(1, 1), num_filter=4, no_bias=True, name=f"{name}_conv")
    return mx.sym.BatchNorm(conv, fix_gamma=fix_gamma, name=f"{name}_bn")


def _params(sym, seed=0):
    rng = np.random.RandomState(seed)
    shapes, _, aux = sym.infer_shape(data=(2, 3, 6, 6))
    names = sym.list_arguments()[1:] + sym.list_auxiliary_states()
    return {n: rng.uniform(0.5, 1.5, s).astype(np.float32) for n, s in zip(names, shapes[1:] + aux)}


def test_a_multiplication_after_a_batchnorm_goes_into_gamma_and_beta():
    sym = mx.sym.relu(0.5 * _conv_bn(mx.sym.var("data"), "a"))
    params = _params(sym)
    folded = fold_scalars(_graph(sym), params)
    assert folded.removed == 1 and sorted(folded.params) == ["a_bn_beta", "a_bn_gamma"]
    np.testing.assert_array_equal(folded.params["a_bn_gamma"], 0.5 * params["a_bn_gamma"])
    x = np.random.RandomState(1).normal(0, 1, (2, 3, 6, 6))
    np.testing.assert_array_equal(_run(folded.graph, {**params, **folded.params}, x), _run(_graph(sym), params, x))


@pytest.mark.parametrize("case", ["between the input and the output", "fixed gamma", "shared weights"])
def test_a_multiplication_with_nowhere_to_go_stays(case):
    data = mx.sym.var("data")
    if case == "between the input and the output":
        sym = 0.5 * (mx.sym.relu(data) + data)
    elif case == "fixed gamma":  # gamma is not used, so it cannot carry the factor
        sym = 0.5 * _conv_bn(data, "a", fix_gamma=True)
    else:  # one weight read by two convolutions
        weight = mx.sym.var("w")
        one = mx.sym.Convolution(data, weight, kernel=(1, 1), num_filter=3, no_bias=True, name="c1")
        sym = mx.sym.Convolution(0.5 * one, weight, kernel=(1, 1), num_filter=3, no_bias=True, name="c2")
    graph = _graph(sym)
    folded = fold_scalars(graph, _params(sym))
    assert (folded.removed, folded.params, folded.graph) == (0, {}, graph)


def test_the_int8_cross_graph_stays_int8_through_its_merges():
    # without the fold each merge left int8 (a dequantize, the fp32 product, a quantize): 3 more of each
    net = _net("cross", depth=14)
    qnet, _ = quantize_network(net, *_calibration(net))
    ops = _ops(qnet._cached_graph[1].tojson())
    assert "_mul_scalar" not in ops
    assert ops.count("_contrib_dequantize") == 1  # before the head's mean, as in resnet
    assert "_contrib_quantized_elemwise_add" in ops
