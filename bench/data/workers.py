"""Worker processes that die with their parent (docs/DESIGN.md "Data").

`bench prepare` builds and packs sets in `spawn` process pools. The set's lock is held by the parent only,
so a worker that outlived a SIGKILLed parent would go on writing into a set that nobody holds, under the
feet of the next prepare. Each pool therefore starts its workers through `pool`, whose initializer asks the
kernel to SIGKILL the worker when its parent dies (Linux `prctl(PR_SET_PDEATHSIG)`); where that call does
not exist, a daemon thread in the worker checks the parent's pid twice a second and ends the worker when
the parent is gone.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from typing import Any

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
HEARTBEAT_S = 0.5  # the fallback's check interval: how long an orphaned worker may go on writing


def pool(processes: int) -> Any:
    """A `spawn` pool of `processes` workers that each die with this process."""
    return mp.get_context("spawn").Pool(processes, initializer=die_with_parent, initargs=(os.getpid(),))


def die_with_parent(parent: int) -> None:
    """The pool initializer: arm the parent-death signal, or start the pid watch where there is none."""
    if not _arm_death_signal():
        threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()
    # The parent may have died before the signal was armed: then nothing would ever send it.
    if os.getppid() != parent:
        os._exit(1)


def _arm_death_signal() -> bool:
    """True when the kernel will SIGKILL this process as its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int) -> None:
    """Exit at once, without cleanup that could write, when this process gets another parent."""
    while os.getppid() == parent:
        time.sleep(HEARTBEAT_S)
    os._exit(1)
