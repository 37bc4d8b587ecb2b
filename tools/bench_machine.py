"""The machine a benchmark ran on: CPU model and the vector-unit flags that decide which kernels run,
cores, the frameworks and their oneDNN builds, OpenMP threads and how busy the machine was.

mxnet (through its bundled oneDNN, "MKLDNN") and PyTorch (oneDNN and MKL) both pick their CPU kernels
at run time from the instruction sets the CPU reports, so the same command gives different ratios on
an AVX2-only CPU and on one with AVX-512 or AMX. The frameworks are asked in child processes: the
report's own process then never holds mxnet's and PyTorch's OpenMP pools at once, and oneDNN's
verbose mode, which names the ISA it dispatches to, is switched on for the probe only.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys

from bench_common import thread_source, versions, visible_cores

# the flags that change which oneDNN / MKL kernels run, in the order the report lists them
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
UNKNOWN = "unknown"


def parse_cpu(text):
    """``{"model": str, "flags": set}`` from /proc/cpuinfo or ``lscpu`` text (the first CPU's lines).

    Both write ``key: value`` lines; /proc/cpuinfo says ``model name``/``flags``, lscpu ``Model name``/
    ``Flags``. A key that is missing gives ``None`` / an empty set.
    """
    model, flags = None, set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = value.strip() or None
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {"model": model, "flags": flags}


def cpu():
    """The CPU as :func:`parse_cpu` reads it from /proc/cpuinfo, or from ``lscpu`` when that says less."""
    found = {"model": None, "flags": set()}
    try:
        with open("/proc/cpuinfo") as f:
            found = parse_cpu(f.read())
    except OSError:
        pass
    if found["model"] is None or not found["flags"]:
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        other = parse_cpu(out)
        found = {"model": found["model"] or other["model"], "flags": found["flags"] or other["flags"]}
    import platform

    found["model"] = found["model"] or platform.processor() or platform.machine() or UNKNOWN
    return found


def cores():
    return {"visible": visible_cores(), "machine": os.cpu_count()}


def load_average():
    """The 1-minute load average (processes running or waiting for a core), or None where unknown."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------- the frameworks, asked in child processes

_MXNET_PROBE = """
import json, mxnet as mx
features = mx.runtime.Features()
x = mx.nd.ones((1, 3, 8, 8))
mx.nd.Convolution(x, mx.nd.ones((4, 3, 3, 3)), kernel=(3, 3), num_filter=4, no_bias=True).wait_to_read()
print("@@probe " + json.dumps({"version": mx.__version__, "mkldnn": features.is_enabled("MKLDNN")}))
"""

_TORCH_PROBE = """
import json, torch
print("@@probe " + json.dumps({"version": torch.__version__, "config": torch.__config__.show(),
                               "mkldnn": torch.backends.mkldnn.is_available(),
                               "capability": torch.backends.cpu.get_cpu_capability()}))
"""


def _probe(code, env=None):
    """Run ``code`` in a child Python; its ``@@probe`` JSON and its whole output (None if it failed)."""
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, **(env or {})))
    except (OSError, subprocess.SubprocessError):
        return None, ""
    for line in proc.stdout.splitlines():
        if line.startswith("@@probe "):
            return json.loads(line[len("@@probe "):]), proc.stdout + proc.stderr
    return None, proc.stdout + proc.stderr


def parse_onednn_verbose(text):
    """oneDNN's version and dispatch ISA from its verbose lines (``dnnl_verbose,info,oneDNN v2.4.4 ...``,
    ``dnnl_verbose,info,cpu,isa:Intel AVX2``); UNKNOWN for what the text does not say."""
    version = re.search(r"oneDNN v(\d+\.\d+\.\d+)", text)
    isa = re.search(r"info,cpu,isa:([^\n]+)", text)
    return {"version": version.group(1) if version else UNKNOWN, "isa": isa.group(1).strip() if isa else UNKNOWN}


def parse_torch_config(text):
    """oneDNN and MKL versions and the ATen CPU capability from ``torch.__config__.show()``."""
    found = {}
    for key, pattern in (("onednn", r"MKL-DNN v(\S+)"), ("mkl", r"Math Kernel Library Version ([\d.]+)"),
                         ("capability", r"CPU capability usage: (\S+)")):
        match = re.search(pattern, text)
        found[key] = match.group(1) if match else UNKNOWN
    return found


def mxnet_info():
    if importlib.util.find_spec("mxnet") is None:
        return {"version": None}
    # MKLDNN_VERBOSE makes mxnet's oneDNN print its version and ISA at the first primitive it runs
    info, out = _probe(_MXNET_PROBE, {"MKLDNN_VERBOSE": "1", "DNNL_VERBOSE": "1"})
    if info is None:
        return {"version": UNKNOWN, "mkldnn": None, "onednn": UNKNOWN, "isa": UNKNOWN,
                "error": (out.strip().splitlines() or ["the probe failed"])[-1]}
    onednn = parse_onednn_verbose(out) if info["mkldnn"] else {"version": None, "isa": None}
    return {"version": info["version"], "mkldnn": info["mkldnn"], "onednn": onednn["version"], "isa": onednn["isa"]}


def torch_info():
    if importlib.util.find_spec("torch") is None:
        return {"version": None}
    info, out = _probe(_TORCH_PROBE)
    if info is None:
        return {"version": UNKNOWN, "onednn": UNKNOWN, "mkl": UNKNOWN, "capability": UNKNOWN,
                "error": (out.strip().splitlines() or ["the probe failed"])[-1]}
    found = parse_torch_config(info["config"])
    if info.get("capability"):
        found["capability"] = info["capability"]
    return dict(found, version=info["version"], mkldnn=info["mkldnn"])


def stamp():
    """Everything :func:`stamp_line` prints, as a JSON-able dict (load averages are added by the caller)."""
    found = cpu()
    return {"cpu": found["model"],
            "flags": {flag: flag in found["flags"] for flag in VECTOR_FLAGS},
            "cores": cores(), "threads": thread_source(),
            "mxnet": mxnet_info(), "torch": torch_info(), "versions": versions()}


def _mxnet_text(m):
    if m["version"] is None:
        return "mxnet not installed"
    text = f"mxnet {m['version']}"
    if m.get("error"):
        return f"{text} (probe failed: {m['error']})"
    if not m["mkldnn"]:
        return f"{text} without MKLDNN"
    return f"{text} with MKLDNN (oneDNN {m['onednn']}, ISA {m['isa']})"


def _torch_text(t):
    if t["version"] is None:
        return "torch not installed"
    if t.get("error"):
        return f"torch {t['version']} (probe failed: {t['error']})"
    return (f"torch {t['version']} (oneDNN {t['onednn']}{'' if t.get('mkldnn') else ' unavailable'}, "
            f"MKL {t['mkl']}, CPU capability {t['capability']})")


def stamp_line(s):
    """One Markdown line that says which machine and which builds a report's figures come from."""
    have = [f for f, present in s["flags"].items() if present]
    lack = [f for f, present in s["flags"].items() if not present]
    flags = ", ".join(have) or "none of " + ", ".join(VECTOR_FLAGS)
    if have and lack:
        flags += f"; not {', '.join(lack)}"
    cores_text = f"{s['cores']['visible']} visible cores (of {s['cores']['machine']})"
    return (f"**Machine:** {s['cpu']} ({flags}); {cores_text}; {_mxnet_text(s['mxnet'])}; "
            f"{_torch_text(s['torch'])}; OpenMP threads: {s['threads']}")
