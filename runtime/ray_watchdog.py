"""A local Ray cluster dies with the runtime.batch driver that started it, even when the driver is SIGKILLed.

    watch_local_cluster() -> the watchdog process (started right after ray.init of a local cluster)

Why: ray.init starts gcs_server, raylet and friends with PR_SET_PDEATHSIG, so they die with the driver, but the
agents the raylet starts (ray::DashboardAgent, ray::RuntimeEnvAgent) and its workers only watch their parent, and
after a SIGKILL of the driver they were seen running on for good (Ray 2.60 here; ray-project/ray#52385). No handler
runs in a SIGKILLed process, so the cleanup must live outside it.

How: a small process in its own session, holding the read end of a pipe whose only write end is the driver's. It
records the driver's descendants every POLL_S seconds (psutil, which also guards against a reused pid); the pipe
reaches end-of-file when the driver exits by any means, and the watchdog then kills every recorded process still
running -- after a normal ray.shutdown() that is nothing, or an agent that lingered.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys

POLL_S = 0.5


def watch_local_cluster() -> subprocess.Popen:
    """Start the watchdog for this process (the driver); it ends by itself when the driver does."""
    r, w = os.pipe()
    try:
        p = subprocess.Popen([sys.executable, "-m", "runtime.ray_watchdog", str(os.getpid()), str(r)],
                             pass_fds=(r,), start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.close(r)
    os.set_inheritable(w, False)
    _held.append(w)  # kept open for the driver's lifetime: its closing is the signal
    return p


_held: list[int] = []


def _watch(driver: int, fd: int) -> None:
    import psutil

    try:
        root = psutil.Process(driver)
    except psutil.NoSuchProcess:
        return
    seen: dict[int, psutil.Process] = {}
    me = os.getpid()
    while True:
        try:
            for c in root.children(recursive=True):
                if c.pid != me:
                    seen.setdefault(c.pid, c)
        except psutil.NoSuchProcess:
            break
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready and not os.read(fd, 1):  # end of file: the driver is gone
            break
    for p in seen.values():
        try:
            if p.is_running():  # same pid and start time: the process recorded, not a newcomer
                p.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the terminal is the driver's to handle
    _watch(int(sys.argv[1]), int(sys.argv[2]))
