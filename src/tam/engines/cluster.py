"""A Ray cluster of real nodes on this machine (`ray start`), on loopback: for the tests, the benchmark and trying
the ray engine without a cluster. Each node is its own process group, so one node can be killed (`kill_node`) as a
machine would die, and `stop` ends exactly the processes it started.

    with LocalCluster(head_cpus=1, node_cpus=[1]) as c:
        run(..., engine="ray", address=c.address)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tam.errors import TamError

# A dead node is found in ~3 s (checks every 0.5 s, 6 failed in a row; Ray's default, 3 s x 5, took ~15 s, measured):
# a killed node's tasks are retried that much sooner. A live node would have to miss 6 checks of 2 s each.
HEALTH = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "6",
          "RAY_health_check_timeout_ms": "2000"}
# Ray runs its workers at niceness 15 over the node's (`worker_niceness`): on a machine shared with other jobs they
# then yield to everything, while the local engines' worker processes run at the niceness of their command. The
# nodes started here run their workers at the niceness they were started with, so that the two engines compete
# for the CPUs alike (bench_ray compares them).
NICE = {"RAY_worker_niceness": "0"}
_JOIN = ("import sys; import ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
         "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()")


def _free_ports(n: int) -> list[int]:
    """`n` distinct free ports (all held open while chosen: one port given twice makes `ray start` fail)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalCluster:
    """A head node and `node_cpus` worker nodes (their CPU counts), each with `object_store_mb` of object store."""

    def __init__(self, head_cpus: int = 1, node_cpus: tuple[int, ...] = (1,), object_store_mb: int = 80) -> None:
        (self.port, client, dashboard), self.store = _free_ports(3), object_store_mb * 1_000_000
        self.temp = Path(tempfile.mkdtemp(prefix="tamray-"))  # short: Ray's socket paths live under it
        self.nodes: list[subprocess.Popen] = []
        self.killed: set[int] = set()  # worker nodes killed (`kill_node`)
        try:
            self._start(["--head", f"--port={self.port}", f"--ray-client-server-port={client}",
                         f"--dashboard-port={dashboard}", "--include-dashboard=false",
                         f"--temp-dir={self.temp}"], head_cpus)
            for cpus in node_cpus:
                self.add_node(cpus)
        except BaseException:
            self.stop()
            raise

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_node(self, cpus: int = 1) -> int:
        """Start one more worker node; returns its number (for `kill_node`)."""
        self._start([f"--address={self.address}"], cpus)
        return len(self.nodes) - 2  # self.nodes[0] is the head

    def _start(self, args: list[str], cpus: int) -> None:
        # loopback only: the head keeps 127.0.0.1 when Ray treats the machine as a single-host cluster; a node joins
        # through `ray start` itself, told not to swap 127.0.0.1 for the machine's network address (`_JOIN`)
        head = "--head" in args
        env = dict(os.environ, **HEALTH, **NICE, RAY_USAGE_STATS_ENABLED="0",
                   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0" if head else "1")
        cli = [str(Path(sys.executable).with_name("ray"))] if head else [sys.executable, "-c", _JOIN]
        log = self.temp / f"start-{len(self.nodes)}.log"
        with log.open("w") as f:  # a file, not a pipe: the node's daemons inherit it and outlive `ray start`
            proc = subprocess.Popen([*cli, "start", *args, f"--num-cpus={cpus}", "--num-gpus=0",
                                     f"--object-store-memory={self.store}", "--disable-usage-stats"],
                                    env=env, start_new_session=True, stdout=f, stderr=subprocess.STDOUT)
        self.nodes.append(proc)  # its process group holds the node's daemons and workers
        if proc.wait(timeout=120) != 0:
            last = log.read_text(errors="replace").strip().splitlines()[-1:]
            raise TamError(f"ray start {args[0]} failed: {' '.join(last)} (log: {log})")

    def kill_node(self, number: int) -> None:
        """Kill worker node `number` (its daemons and their worker processes, SIGKILL), as if its machine died."""
        _kill(_tree(self.nodes[number + 1].pid), signal.SIGKILL)
        self.killed.add(number)

    def live_node(self, cpus: int = 1) -> int:
        """The last worker node started, or a new one (`cpus` CPUs) when it was killed or there is none."""
        last = len(self.nodes) - 2
        return last if last >= 0 and last not in self.killed else self.add_node(cpus)

    def stop(self) -> None:
        """End every process this cluster started (worker nodes first), then remove its folder. The GCS server and a
        Python daemon of the head outlive SIGTERM (15 s and more, measured): what is left after 2 s is killed."""
        pids = [p for proc in reversed(self.nodes) for p in _tree(proc.pid)]
        _kill(pids, signal.SIGTERM)
        deadline = time.time() + 2
        while time.time() < deadline and _living(pids):
            time.sleep(0.2)
        _kill(_living(pids), signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state) of every process."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(stat.parent.name)] = (int(fields[1]), int(fields[3]), fields[0])
    return out


def _tree(pgid: int) -> list[int]:
    """The processes of group `pgid` (a node started by `ray start`) and their descendants (Ray's workers run in
    sessions of their own)."""
    procs = _processes()
    found = {pid for pid, (_, group, _) in procs.items() if group == pgid}
    grew = True
    while grew:
        more = {pid for pid, (parent, _, _) in procs.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return sorted(found)


def _living(pids: list[int]) -> list[int]:
    procs = _processes()
    return [p for p in pids if p in procs and procs[p][2] != "Z"]


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
