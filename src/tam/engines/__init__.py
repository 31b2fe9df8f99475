"""How a stage runs: the per-item work of a stage (a video, a group of comment sources, a run of a grid) is a plain
function of the stage; an engine maps it over the items.

- `local` (the default): the stage's own pool on this machine (decoding threads, worker processes, run processes).
  It needs nothing beyond tam.
- `ray`: a Ray cluster (`ray_engine`; `pip install 'tam[ray]'`): tasks for comment groups and grid runs, actors
  holding the encoders for extraction. Ray's task retries and actor restarts re-run the work of a worker or node
  that dies; the stages' atomic per-item writes and resume make a retried item give the same output once.

`import ray` happens only inside `ray_engine`, when a stage is asked to run on Ray.
"""

from __future__ import annotations

ENGINES = ("local", "ray")

TIED = ("import ctypes, os, runpy, signal, sys; ppid = os.getppid(); "
        "ctypes.CDLL(None).prctl(1, signal.SIGKILL); os.getppid() == ppid or os._exit(1); "
        "sys.argv[0] = 'tam'; runpy.run_module('tam', run_name='__main__', alter_sys=True)")
"""`python -c TIED ARGS` runs `python -m tam ARGS` in a process that is killed when its parent dies (Linux's
PR_SET_PDEATHSIG): a run started by a Ray worker never outlives it, so a retried run never shares its folder with
a stray copy."""


def add_engine_arguments(p) -> None:
    """`--engine` and `--address` for a stage's command."""
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local (default: this machine's pool) or ray (a Ray cluster; pip install 'tam[ray]')")
    p.add_argument("--address", default="",
                   help="with --engine ray: the cluster (host:port, ray://host:10001); default: RAY_ADDRESS, "
                        "else a cluster started on this machine, else a new local one")
