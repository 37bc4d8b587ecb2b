"""Deployment: MKLDNN-fused fp32 and calibrated int8 inference (gluonfuse.deploy)."""
import mxnet as mx
import numpy as np
import pytest

from gluonfuse.models import get_model


def _net(name, **kwargs):
    mx.random.seed(0)
    net = get_model(name, **kwargs)
    net.initialize(mx.init.Xavier(magnitude=2))
    return net


@pytest.mark.parametrize("name", ["cross", "half"])
def test_gluon_optimize_for_fuses_merge_and_run(name):
    # mxnet 1.9.1's conv+sum fusion fails on `x + conv(...)` when x is off the conv's input path;
    # cross and half put the convolution branch on the left of every add (fusion._conv_first)
    net = _net(name, depth=14)
    x = mx.nd.array(np.random.RandomState(0).uniform(-1, 1, (2, 3, 32, 32)))
    net.hybridize()
    with mx.autograd.predict_mode():
        plain = net(x).asnumpy()
    net.optimize_for(x, backend="MKLDNN")
    with mx.autograd.predict_mode():
        fused = net(x).asnumpy()
    graph = net._cached_graph[1].tojson()
    assert "_sg_mkldnn_conv" in graph
    np.testing.assert_allclose(fused, plain, rtol=1e-4, atol=1e-5)
