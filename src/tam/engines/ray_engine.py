"""The Ray engine: a stage's per-item function mapped over a Ray cluster.

Three shapes, all yielding `(index, result)` as items finish (the caller keeps its progress bar and its summary):
- `map_tasks(fn, items)`: one Ray task per item, with the resources the item declares (grid runs: CPUs, GPUs).
  A task whose worker process or node dies is retried elsewhere (`max_retries`).
- `map_chunks(fn, items, weights)`: many small items (comment groups), a few per task, in chunks that shrink as
  the work left does (`chunks`): a task's fixed cost (scheduling, a round trip, its arguments and result through
  the driver) is paid ~15 times per CPU rather than once per item, and the last tasks are still small.
- `map_actors(cls, init, items)`: long-lived actors built once (extraction: each holds the encoders, a GPU each, or
  a fraction of one) and fed items through `cls.run(item)`. The items of an actor that dies go to the others.

An item whose function raised, or that still failed after the retries, comes back as a `Failure` (one line), never
dropped. Tasks go out at most `window` at a time, so a million items do not sit in the scheduler at once. The
functions write their outputs themselves, atomically, onto storage every node sees; a retried item redoes its work
or finds it done. When the driver dies Ray ends its tasks and actors; a new driver resumes from what was written.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from tam.errors import TamError

RETRIES = 3  # retries of a task (or restarts of an actor) whose process or node died


@dataclass(frozen=True)
class Failure:
    """An item that raised or could not be run (its worker kept dying)."""

    message: str


def connect(address: str = "") -> None:
    """Join the cluster at `address` ("" = RAY_ADDRESS, else one on this machine, else start a local one)."""
    try:
        import ray
    except ImportError:
        raise TamError("--engine ray needs Ray: pip install 'tam[ray]'") from None
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:  # the workers import tam themselves: the same environment on every node (docs/scaling.md)
        ray.init(address=address or None, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TamError(f"--address {address or 'auto'}: cannot join the Ray cluster ({first})") from None


_WARM: list = []  # the warm-up tasks' results, held until the driver ends


def _import(*modules: str) -> None:
    import importlib

    for module in modules:
        importlib.import_module(module)


def warm(*modules: str, tasks: int = 0, cpus: float = 1) -> None:
    """Start worker processes importing `modules` now, so that a stage's first tasks find their workers ready: their
    imports (seconds: numpy, torch, jieba and its dictionary) overlap the driver's own preparation (loading a
    lexicon, the actors building their encoders). Ray reuses a worker for the job's tasks. `tasks` (0: one per
    CPU of the cluster, less one: Ray starts one worker more than the tasks asked for, measured on Ray 2.60, and
    a worker that starts for nothing costs ~0.5 CPU-s while the others start). `cpus` 0 where actors follow: a
    warm-up task of 1 CPU holds it until its imports end, and an actor asking for that CPU waits (extraction: the
    encoders' actor started ~5 s later at load 16, watched)."""
    import ray

    n = tasks or max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    _WARM.extend(ray.remote(_import).options(num_cpus=cpus).remote(*modules) for _ in range(n))


def fit(cpus: float, gpus: float | None) -> tuple[int, dict]:
    """How many actors of `cpus` CPUs and `gpus` GPUs each (None: one GPU when the cluster has any, else none) the
    cluster's nodes hold, with their resources; refuses actors that no node can hold (Ray would wait for ever)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if gpus is None:
        gpus = 1.0 if any(r.get("GPU", 0) for r in nodes) else 0.0
    n = sum(min(int(r.get("CPU", 0) // cpus) if cpus else 1 << 30, int(r.get("GPU", 0) // gpus) if gpus else 1 << 30)
            for r in nodes)
    if n < 1:
        raise TamError(f"no node of the Ray cluster has {cpus:g} CPU(s) and {gpus:g} GPU(s) for an actor")
    return n, {"num_cpus": cpus, "num_gpus": gpus}


def _call_in(cwd: str, fn: Callable, *args):
    """`fn(*args)` in the driver's working directory (relative paths mean what they mean to the driver; a worker
    process serves one driver only)."""
    os.chdir(cwd)
    return fn(*args)


class _Host:
    """An actor holding `cls(*init)`, built in the driver's working directory."""

    def __init__(self, cwd: str, cls: type, init: tuple) -> None:
        os.chdir(cwd)
        self.obj = cls(*init)

    def run(self, item):
        return self.obj.run(item)


def _window() -> int:
    import ray

    return max(4, 2 * int(ray.cluster_resources().get("CPU", 1)))


def _raised(e: BaseException) -> Failure:
    """An item whose function raised `e`: the first line of its message (its type's name when it has none)."""
    return Failure(str(e).splitlines()[0] if str(e) else type(e).__name__)


def failure(e: Exception) -> Failure:
    import ray

    if isinstance(e, ray.exceptions.RayTaskError):  # the function raised: its own one-line message
        return _raised(e.cause if e.cause is not None else e)
    return Failure(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'worker lost'}")


def map_tasks(fn: Callable, items: Sequence[tuple], resources: Callable[[int], dict] | None = None,
              retries: int = RETRIES) -> Iterator[tuple[int, object]]:
    """`fn(*items[i])` as one Ray task per item (`resources(i)`: num_cpus / num_gpus, default one CPU), at most
    `_window()` in flight; yields (i, result) as they finish."""
    import ray

    remote, cwd, window = ray.remote(_call_in), os.getcwd(), _window()
    pending: dict = {}
    nxt = 0
    while nxt < len(items) or pending:
        while nxt < len(items) and len(pending) < window:
            res = resources(nxt) if resources else {"num_cpus": 1}
            pending[remote.options(max_retries=retries, retry_exceptions=False, **res).remote(cwd, fn, *items[nxt])] \
                = nxt
            nxt += 1
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            try:
                yield i, ray.get(ref)
            except ray.exceptions.RayError as e:
                yield i, failure(e)


def chunks(weights: Sequence[float], cpus: int, share: int = 2) -> list[list[int]]:
    """The items (in their order) cut into runs for one task each, by guided self-scheduling: each run takes items
    until it holds 1/(`share` x `cpus`) of the weight still left (at least one item). The first runs are large, the
    last ones single items, so the CPUs still end together: ~`share` x `cpus` x ln(items) tasks in all."""
    left, out = float(sum(weights)), []
    i = 0
    while i < len(weights):
        run, held = [], 0.0
        while i < len(weights) and (not run or held + weights[i] <= left / (share * cpus)):
            run.append(i)
            held += weights[i]
            i += 1
        out.append(run)
        left -= held
    return out


def _each(fn: Callable, items: list[tuple]) -> list:
    """`fn(*item)` for each item in turn; an item that raised is a `Failure` (its first line), the others go on."""
    out = []
    for args in items:
        try:
            out.append(fn(*args))
        except Exception as e:  # as a task of its own would: the item's one line, never lost
            out.append(_raised(e))
    return out


def map_chunks(fn: Callable, items: Sequence[tuple], weights: Sequence[float],
               retries: int = RETRIES) -> Iterator[tuple[int, object]]:
    """`fn(*items[i])` for every item, several items per Ray task of one CPU (`chunks` of `weights`, the items'
    relative costs); yields (i, result) per item as its task finishes. A task whose worker died on every try gives
    each of its items that `Failure`."""
    import ray

    runs = chunks(weights, int(ray.cluster_resources().get("CPU", 1)))
    for r, results in map_tasks(_each, [(fn, [items[i] for i in run]) for run in runs], retries=retries):
        for k, i in enumerate(runs[r]):
            yield i, results if isinstance(results, Failure) else results[k]


def map_actors(cls: type, init: tuple, items: Sequence, actors: int, resources: dict,
               retries: int = RETRIES) -> Iterator[tuple[int, object]]:
    """`actors` instances of `cls(*init)` (each with `resources`), fed `run(item)` calls, two in flight per actor
    (the next starts as soon as the last ends). The items of an actor that dies (its process or node) go back to
    the queue, to the others (new actors start only when none is left: a restarted one could wait for ever for
    the resources the live ones hold); an item whose actors died `retries` + 1 times is a `Failure`."""
    import ray

    remote, cwd, keys = ray.remote(_Host).options(max_restarts=0, **resources), os.getcwd(), itertools.count()
    pool: dict[int, object] = {}  # key -> actor
    free: list[int] = []  # a key per call an actor can take
    queue, tries, pending = list(range(len(items)))[::-1], [0] * len(items), {}

    def start() -> int:
        key = next(keys)
        pool[key] = remote.remote(cwd, cls, init)
        return key

    free += [start() for _ in range(max(1, min(actors, len(items))))] * 2  # the first calls spread over the actors
    try:
        while queue or pending:
            if not pool:
                free += [start()] * 2
            while queue and free:
                key, i = free.pop(), queue.pop()
                pending[pool[key].run.remote(items[i])] = (i, key)
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i, key = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as e:  # the actor is gone: its slots with it
                    if e.actor_init_failed:
                        raise TamError(f"an actor could not start: {failure(e).message}") from None
                    pool.pop(key, None)
                    free[:] = [k for k in free if k != key]
                    tries[i] += 1
                    if tries[i] <= retries:
                        queue.append(i)
                    else:
                        yield i, failure(e)
                    continue
                except ray.exceptions.RayError as e:
                    result = failure(e)
                free.append(key)
                yield i, result
    finally:
        for a in pool.values():
            ray.kill(a)
