"""Is a run's process still alive? The pid, host and heartbeat in ``status.json``, and :func:`state_of`.

A process killed without a word (SIGKILL, a segfault, the out-of-memory killer, a power loss) leaves
``status.json`` saying "running" for ever. So a running run records who runs it (:func:`owner`:
pid, host, the process's start time) and a heartbeat time that :class:`Heartbeat` renews every
:data:`HEARTBEAT_SECONDS` from a background thread (an epoch of a big network takes hours, so the
epoch's end alone is too rare a sign of life). :func:`state_of` then tells:

* on the run's own host, the pid is gone (or now belongs to a younger process): ``died``;
* on another host, the process cannot be asked: no heartbeat for :data:`STALE_SECONDS`: ``stale``
  (died, or cut off from the shared directory), a recent one: ``running``.

Reading never imports mxnet (``gluonfuse results`` uses it).
"""
import os
import socket
import threading
import time

HEARTBEAT_SECONDS = 60
# ten missed heartbeats: a loaded machine or a slow shared filesystem delays some, never that many
STALE_SECONDS = 10 * HEARTBEAT_SECONDS


def owner(pid=None):
    """The fields that identify the process running a run (this one by default), heartbeat now."""
    pid = os.getpid() if pid is None else pid
    now = time.time()
    return {"pid": pid, "host": socket.gethostname(), "pid_start": _process_start(pid),
            "started": now, "heartbeat": now}


def state_of(status, now=None, host=None):
    """The state of a run from its status.json: ``finished``, ``failed``, ``running``, ``died`` or
    ``stale`` (see the module docstring); None when status.json has no state yet.

    A "running" status from before pids were recorded stays ``running`` (nothing to check)."""
    state = status.get("state")
    if state != "running" or "pid" not in status:
        return state
    if status.get("host") == (host or socket.gethostname()):
        return "running" if _alive(status["pid"], status.get("pid_start")) else "died"
    beat = status.get("heartbeat")
    if not isinstance(beat, (int, float)) or (now or time.time()) - beat > STALE_SECONDS:
        return "stale"
    return "running"


def describe(status, state=None):
    """One phrase on a run that is not finished or failed, e.g. for ``results`` and ``--resume``."""
    state = state or state_of(status)
    who = f"process {status.get('pid')} on {status.get('host')}"
    if state == "died":
        return f"died ({who} is gone)"
    if state == "stale":
        beat = status.get("heartbeat")
        age = f"{(time.time() - beat) / 60:.0f} minutes" if isinstance(beat, (int, float)) else "ever"
        return f"stale (no heartbeat from {who} for {age}: it died or lost the run directory)"
    return f"running ({who})" if "pid" in status else "running"


class Heartbeat:
    """A daemon thread that renews status.json's heartbeat every ``interval`` seconds while it runs
    (``with Heartbeat(write)``); ``write(heartbeat=...)`` is the run directory's status writer."""

    def __init__(self, write, interval=HEARTBEAT_SECONDS):
        self.write, self.interval = write, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="gluonfuse-heartbeat", daemon=True)

    def _beat(self):
        while not self._stop.wait(self.interval):
            try:
                self.write(heartbeat=time.time())
            except OSError:
                pass  # a full disk or a vanished mount: the next beat tries again

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def _alive(pid, pid_start):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process exists under that pid
    except (OverflowError, ValueError):
        return False
    # a pid is reused after its process dies: a process that started later is not the run's
    return pid_start is None or _process_start(pid) in (None, pid_start)


def _process_start(pid):
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces; field 22 is the start time
    return int(stat[stat.rindex(")") + 2:].split()[19])
