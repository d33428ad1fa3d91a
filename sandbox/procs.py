"""Process helpers shared by the sandbox's services (moto, the GraphQL simulator, boards, broker...)."""

import contextlib
import os
import signal
import time
from pathlib import Path


def is_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie counts as gone (and our own child is reaped on the way)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A zombie still answers kill(0) but is gone for our purposes.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def stop(pid: int, timeout: float = 10.0, kill_wait: float = 5.0, poll: float = 0.1) -> None:
    """SIGTERM, wait up to `timeout` s, then SIGKILL and wait `kill_wait` s; RuntimeError if it lives on."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for wait in (timeout, kill_wait):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not is_alive(pid):
                return
            time.sleep(poll)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    raise RuntimeError(f"process {pid} did not stop")
