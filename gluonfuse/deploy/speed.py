"""Inference speed of several blocks side by side: interleaved rounds, median images per second.

The blocks take turns within every round, so a drift of the shared machine's speed hits all of them
alike; the ratios are what to read, not the absolute numbers.
"""
import statistics
import time

import numpy as np


def images_per_second(blocks, input_shape, batch_size, rounds=5, seed=0):
    """``{name: median images/s}`` of one forward pass per round for each of ``blocks`` (a dict).

    Each block runs once before timing (graph building, MKLDNN weight reordering).
    """
    import mxnet as mx

    x = mx.nd.array(np.random.RandomState(seed).normal(0, 1, (batch_size,) + tuple(input_shape)))
    times = {name: [] for name in blocks}

    def run(block):
        with mx.autograd.predict_mode():
            out = block(x)
        for o in out if isinstance(out, (list, tuple)) else [out]:
            o.wait_to_read()

    for block in blocks.values():
        run(block)
    for _ in range(rounds):
        for name, block in blocks.items():
            start = time.perf_counter()
            run(block)
            times[name].append(time.perf_counter() - start)
    return {name: batch_size / statistics.median(t) for name, t in times.items()}
