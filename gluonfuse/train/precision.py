"""Mixed precision (``--dtype``): float16 on GPUs, bfloat16 on CPUs, both through ``mxnet.contrib.amp``.

* ``float32`` (default): nothing changes.
* ``float16``: GPUs only. ``amp.init('float16')`` before the network is built (AMP rewrites MXNet's
  operator functions to insert casts), ``amp.init_trainer`` and ``amp.scale_loss`` for dynamic loss
  scaling; the optimizer then runs on the workers/devices (``update_on_kvstore=False``) so that a
  step whose gradients overflowed is skipped, which rules out ``dist_async`` (whose optimizer runs on
  the servers).
* ``bfloat16``: CPUs with native bfloat16 (``avx512_bf16`` or ``amx_bf16``) and an MKLDNN build.
  Convolutions and dense layers run in bfloat16 with float32 weights; bfloat16 has float32's
  exponent range, so no loss scaling is needed.

AMP is process-wide and cannot be undone: a process that trained in reduced precision cannot build a
float32 network any more (:func:`activate` refuses). Exports are float32 either way: MXNet's
``export`` drops the amp casts from the symbol and the weights are float32;
:func:`check_float32_export` verifies both.
"""
import json

from gluonfuse.errors import ArgumentError, did_you_mean

DTYPES = ("float32", "float16", "bfloat16")
AMP_OPS = ("amp_cast", "amp_multicast")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")

_active = None  # the dtype this process initialised AMP for


def check_config(dtype, contexts, kvstore):
    """ValueError for a dtype that cannot run on ``contexts`` (names 'cpu(0)', 'gpu(1)') or ``kvstore``."""
    if dtype not in DTYPES:
        raise ArgumentError(f"unknown dtype {dtype!r}.{did_you_mean(dtype, DTYPES)} Known: {', '.join(DTYPES)}",
                            "dtype")
    on_gpu = [c.startswith("gpu") for c in contexts]
    if dtype == "float16":
        if not all(on_gpu):
            raise ArgumentError("dtype float16 runs on GPUs only (mxnet.contrib.amp with dynamic loss scaling); "
                                "use gpus, or dtype bfloat16 on a CPU with native bfloat16", "dtype", "gpus")
        if "async" in str(kvstore):
            raise ArgumentError("dtype float16 cannot use kvstore dist_async: dynamic loss scaling skips overflowing "
                                "steps on the workers, but dist_async updates on the servers; use dist_sync",
                                "dtype", "kvstore")
    if dtype == "bfloat16" and any(on_gpu):
        raise ArgumentError("dtype bfloat16 runs on CPUs (MKLDNN); on GPUs use dtype float16", "dtype")


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU feature flags (a set; empty when they cannot be read)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def check_support(dtype, flags=None, mkldnn=None):
    """ValueError when this machine cannot run ``dtype`` (bfloat16: CPU flags and an MKLDNN build)."""
    if dtype != "bfloat16":
        return
    flags = cpu_flags() if flags is None else set(flags)
    if not flags & set(BF16_FLAGS):
        raise ArgumentError("dtype bfloat16 needs a CPU with native bfloat16 (avx512_bf16 or amx_bf16 in "
                            "/proc/cpuinfo); this CPU has neither, use dtype float32", "dtype")
    if mkldnn is None:
        import mxnet as mx

        mkldnn = mx.runtime.Features().is_enabled("MKLDNN")
    if not mkldnn:
        raise ArgumentError("dtype bfloat16 needs an mxnet build with MKLDNN (oneDNN); this one has none", "dtype")


def activate(dtype):
    """Initialise AMP for ``dtype`` in this process (before any network is built); idempotent."""
    global _active
    from mxnet.contrib import amp

    initialised = amp.amp._amp_initialized
    if dtype == "float32":
        if initialised:
            raise ValueError("this process already runs mixed precision (mxnet.contrib.amp cannot be undone); "
                             "train float32 in a new process")
        return
    if initialised and _active != dtype:
        raise ArgumentError(f"this process already initialised mixed precision for {_active or 'another dtype'}; "
                            f"train with dtype {dtype} in a new process", "dtype")
    if not initialised:
        amp.init(target_dtype=dtype)
    _active = dtype


def uses_loss_scaling(dtype):
    return dtype == "float16"


def init_trainer(trainer, dtype):
    """Attach AMP's dynamic loss scaler to ``trainer`` when ``dtype`` needs one."""
    if uses_loss_scaling(dtype):
        from mxnet.contrib import amp

        amp.init_trainer(trainer)
    return trainer


def check_float32_export(symbol_file, params_file):
    """GluonfuseError unless the exported symbol has no amp casts and every parameter is float32."""
    import mxnet as mx
    import numpy as np

    from gluonfuse.errors import GluonfuseError

    with open(symbol_file) as f:
        ops = {node["op"] for node in json.load(f)["nodes"]}
    casts = sorted(ops & set(AMP_OPS))
    if casts:
        raise GluonfuseError(f"{symbol_file}: the export still holds {', '.join(casts)} nodes")
    wrong = sorted(name for name, value in mx.nd.load(params_file).items() if value.dtype != np.float32)
    if wrong:
        raise GluonfuseError(f"{params_file}: parameters not float32: {', '.join(wrong[:5])}")
