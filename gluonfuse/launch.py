"""Start a distributed job on MXNet's parameter server (ps-lite): scheduler, servers and workers.

``launch_local`` runs every process on this machine bound to 127.0.0.1. MXNet's bundled
``tools/launch.py`` would pick a non-loopback address, and ps-lite also needs ``DMLC_NODE_HOST``, or
it binds another interface (docs/mxnet-notes.md#ps-lite-on-loopback). A scheduler or server is a Python process that imports mxnet with
``DMLC_ROLE`` set: mxnet then serves the kvstore and exits when the workers finish.

The launcher watches its children: when any process fails (non-zero exit, or a server/scheduler that
ends while workers still run), it stops the rest (SIGTERM, then SIGKILL after a grace period) and
returns non-zero, naming the process, so a job never hangs half-dead. Ctrl-C stops the whole job.

``ssh`` and ``mpi`` hand the same command to mxnet's own launcher (``mxnet/tools/launch.py``).
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from gluonfuse import visible_cores

# seconds a process gets between SIGTERM and SIGKILL when the job is torn down
GRACE_SECONDS = 5.0
# seconds servers and the scheduler may take to exit after the last worker succeeded
DRAIN_SECONDS = 30.0


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def job_environment(num_workers, num_servers, port, host="127.0.0.1", threads_per_worker=None):
    """The DMLC variables every process of a loopback job shares, and the OpenMP threads per worker."""
    if num_workers < 1 or num_servers < 1:
        raise ValueError(f"need at least 1 worker and 1 server, got {num_workers} workers, "
                         f"{num_servers} servers")
    threads = threads_per_worker or max(1, visible_cores() // num_workers)
    env = {"DMLC_PS_ROOT_URI": host, "DMLC_PS_ROOT_PORT": str(port), "DMLC_NUM_SERVER": str(num_servers),
           "DMLC_NUM_WORKER": str(num_workers), "DMLC_NODE_HOST": host}
    return env, threads


class _Process:
    def __init__(self, role, index, argv, env, out):
        self.role, self.index = role, index
        self.label = f"{role} {index}" if role != "scheduler" else "scheduler"
        self.popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True)  # own group: its subprocesses die with it
        self.reader = threading.Thread(target=self._pump, args=(out,), daemon=True)
        self.reader.start()

    def _pump(self, out):
        prefix = f"[{self.label}] "
        for raw in iter(self.popen.stdout.readline, b""):
            out.write(prefix + raw.decode("utf-8", "replace"))
            out.flush()

    def signal(self, sig):
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _stop_all(procs):
    alive = [p for p in procs if p.popen.poll() is None]
    for p in alive:
        p.signal(signal.SIGTERM)
    deadline = time.time() + GRACE_SECONDS
    while time.time() < deadline and any(p.popen.poll() is None for p in alive):
        time.sleep(0.05)
    for p in alive:
        if p.popen.poll() is None:
            p.signal(signal.SIGKILL)
    for p in procs:
        try:
            p.popen.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        p.reader.join(timeout=1)


def launch_local(command, num_workers, num_servers=1, port=None, threads_per_worker=None, out=None,
                 extra_env=None):
    """Run ``command`` (argv list) as ``num_workers`` workers with servers and a scheduler on 127.0.0.1.

    Returns 0 when every worker succeeded; otherwise tears the job down and returns 1 with a message
    on ``out`` naming the process that failed. Raises ``ValueError`` for impossible arguments.
    """
    if not command:
        raise ValueError("no command to launch: put it after '--', e.g. "
                         "gluonfuse launch -n 2 -- gluonfuse train ... --kvstore dist_sync")
    out = out or sys.stdout
    port = port or free_port()
    shared, threads = job_environment(num_workers, num_servers, port, threads_per_worker=threads_per_worker)
    base = dict(os.environ)
    base.update(extra_env or {})
    base.update(shared)
    serve = [sys.executable, "-c", "import mxnet"]  # with DMLC_ROLE set, importing mxnet serves

    import gluonfuse

    # importing gluonfuse gave this process every core; the job shares them (docs/mxnet-notes.md#openmp-threads), unless the
    # user chose a thread count
    user_threads = "OMP_NUM_THREADS" in (extra_env or {}) or (
        "OMP_NUM_THREADS" in os.environ and not gluonfuse.THREADS_CHOSEN_BY_GLUONFUSE)

    def env_for(role, omp):
        env = dict(base, DMLC_ROLE=role)
        if not user_threads:
            env["OMP_NUM_THREADS"] = env[gluonfuse._MARK] = str(omp)
        return env

    procs = []
    interrupted = []

    def on_signal(signum, _frame):
        interrupted.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        procs.append(_Process("scheduler", 0, serve, env_for("scheduler", 1), out))
        procs += [_Process("server", i, serve, env_for("server", 1), out) for i in range(num_servers)]
        workers = [_Process("worker", i, list(command), env_for("worker", threads), out)
                   for i in range(num_workers)]
        procs += workers
        failure = None
        service_gone = None  # when a server/scheduler ended cleanly while workers still ran
        while failure is None and not interrupted:
            if all(w.popen.poll() == 0 for w in workers):
                break
            for p in procs:
                code = p.popen.poll()
                if code is None or code == 0:
                    # a clean exit of a server or the scheduler is shutdown racing the workers' exits,
                    # unless workers are still running well after it
                    if code == 0 and p.role != "worker" and service_gone is None:
                        service_gone = (time.time(), p.label)
                    continue
                # the pid names the process in its own logs (a worker's rank is not its launch index)
                failure = f"{p.label} (pid {p.popen.pid}) exited with code {code}" if code > 0 else \
                    f"{p.label} (pid {p.popen.pid}) was killed by signal {-code}"
                break
            if failure is None and service_gone and time.time() - service_gone[0] > DRAIN_SECONDS:
                failure = f"{service_gone[1]} ended while workers were still running"
            time.sleep(0.1)
        if interrupted:
            out.write("launch: interrupted; stopping every process of the job\n")
            _stop_all(procs)
            return 130
        if failure:
            out.write(f"launch: {failure}; stopping the rest of the job\n")
            _stop_all(procs)
            return 1
        deadline = time.time() + DRAIN_SECONDS
        while time.time() < deadline and any(p.popen.poll() is None for p in procs):
            time.sleep(0.1)
        _stop_all(procs)
        return 0
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if any(p.popen.poll() is None for p in procs):
            _stop_all(procs)


def mxnet_launcher_command(command, num_workers, num_servers, launcher, hostfile=None):
    """The argv that hands ``command`` to mxnet's own ``tools/launch.py`` (ssh or mpi clusters)."""
    import importlib.util

    if launcher not in ("ssh", "mpi"):
        raise ValueError(f"launcher must be 'local', 'ssh' or 'mpi', not {launcher!r}")
    if launcher == "ssh" and not hostfile:
        raise ValueError("the ssh launcher needs -H HOSTFILE (one host per line)")
    if hostfile and not os.path.isfile(hostfile):
        raise ValueError(f"host file not found: {hostfile}")
    spec = importlib.util.find_spec("mxnet")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("mxnet is not installed")
    script = os.path.join(list(spec.submodule_search_locations)[0], "tools", "launch.py")
    if not os.path.isfile(script):
        raise ValueError(f"mxnet's launcher is missing from this installation ({script})")
    argv = [sys.executable, script, "-n", str(num_workers), "-s", str(num_servers), "--launcher", launcher]
    if hostfile:
        argv += ["-H", hostfile]
    return argv + list(command)
