"""How `ray_engine.map_chunks` cuts many small items into tasks (no cluster needed): every item once and in order,
runs that shrink with the work left, and an item that raises does not take its run's other items with it."""

from __future__ import annotations

import pytest

from tam.engines.ray_engine import Failure, _each, chunks


@pytest.mark.parametrize("weights, cpus", [([1.0] * 136, 2), ([5.0, 3.0, 1.0, 1.0, 0.5] * 30, 3), ([7.0], 4),
                                           ([100.0, 1.0, 1.0], 2)])
def test_chunks_hold_every_item_once_in_order_and_shrink(weights, cpus):
    runs = chunks(weights, cpus)
    assert [i for run in runs for i in run] == list(range(len(weights)))
    left = sum(weights)
    for run in runs:  # each run within its share of the weight left, unless it is a single item
        held = sum(weights[i] for i in run)
        assert len(run) == 1 or held <= left / (2 * cpus) + 1e-9
        left -= held
    assert len(runs[-1]) == 1
    if len(weights) == 136:  # far fewer tasks than items, the first the largest
        assert len(runs) <= 25 and len(runs[0]) == max(map(len, runs)) == 34


def test_an_item_that_raises_is_a_failure_and_the_others_go_on():
    def invert(x: float) -> float:
        return 1 / x

    assert _each(invert, [(2,), (0,), (4,)]) == [0.5, Failure("division by zero"), 0.25]
