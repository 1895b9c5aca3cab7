"""Worker processes die with their parent (bench/data/workers.py): by the kernel's parent-death signal, and
by the parent-pid watch where that signal cannot be armed. The end-to-end check (kill -9 of a real video
prepare) is in tests/test_faults_kill.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A worker stand-in: arms the death watch (optionally without prctl), reports its pid, then idles.
CHILD = """
import sys, time
import bench.data.workers as workers
if sys.argv[1] == "heartbeat":
    workers._arm_death_signal = lambda: False
import os
workers.die_with_parent(os.getppid())
print(os.getpid(), flush=True)
time.sleep(120)
"""

# The parent stand-in: starts the child, passes its pid on, then idles until killed.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("how", ["prctl", "heartbeat"])
def test_a_worker_dies_within_a_second_of_its_parents_kill_9(how: str) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, how], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        time.sleep(0.3)
        assert alive(child)  # the watch does not end a worker whose parent lives
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 2.0
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(child), f"the worker outlived its parent ({how})"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
