"""The demo's worker pools: a killed demo leaves no worker running on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

SCRIPT = """
import sys, time
from pathlib import Path

def task(path):
    import os
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    from tam.demo.run import _workers
    pool = _workers(1)
    pool.submit(task, sys.argv[1])
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its reaper counts as gone
        return f.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_exits_when_the_demo_process_is_killed(tmp_path):
    script, pidfile = tmp_path / "demo_like.py", tmp_path / "worker.pid"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(pidfile)], cwd=tmp_path)
    try:
        for _ in range(600):
            if pidfile.is_file() and pidfile.read_text():
                break
            time.sleep(0.1)
        worker = int(pidfile.read_text())
        assert _alive(worker)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for _ in range(100):
            if not _alive(worker):
                break
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived the killed demo process"
    finally:
        proc.kill()
