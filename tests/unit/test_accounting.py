"""RecentSeqs: redeliveries counted per agent in a bounded sliding window."""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.ingest.accounting import RecentSeqs


def test_a_repeat_is_counted_within_a_call_and_across_calls() -> None:
    seen = RecentSeqs()
    assert seen.count_repeats("a", [1, 2, 3]) == 0
    assert seen.count_repeats("a", [3, 4, 4, 5, 1]) == 3  # 3 and 1 before, 4 twice here
    assert seen.count_repeats("a", [1, 2, 3, 4, 5]) == 5
    assert seen.count_repeats("a", [6]) == 0
    assert seen.count_repeats("a", [6]) == 1
    assert seen.count_repeats("a", []) == 0


def test_agents_are_counted_apart() -> None:
    seen = RecentSeqs()
    assert seen.count_repeats("a", list(range(1, 101))) == 0
    assert seen.count_repeats("b", list(range(1, 101))) == 0
    assert seen.count_repeats("b", list(range(51, 151))) == 50
    assert seen.count_repeats("a", list(range(101, 201))) == 0


def test_numbers_out_of_order_a_backlog_draining_under_live_readings() -> None:
    seen = RecentSeqs(window=1024)
    assert seen.count_repeats("a", list(range(500, 601))) == 0  # live, after an outage
    assert seen.count_repeats("a", list(range(100, 200))) == 0  # the backlog, below
    assert seen.count_repeats("a", [601, 200, 602, 201, 202]) == 0
    assert seen.count_repeats("a", list(range(150, 250))) == 53  # 150..202 were stored
    assert seen.count_repeats("a", [602, 601, 600, 99, 603]) == 3
    assert seen.count_repeats("a", list(range(610, 600, -1))) == 3  # descending: 601..603
    assert seen.count_repeats("a", list(range(95, 105))) == 6  # 99..104 stored, not 95..98


def test_a_batch_reaching_both_sides_of_the_highest() -> None:
    seen = RecentSeqs(window=64)
    assert seen.count_repeats("a", list(range(1, 41))) == 0
    assert seen.count_repeats("a", list(range(31, 61))) == 10
    assert seen.count_repeats("a", list(range(1, 80))) == 45  # 16..60; 1..15 fell out
    assert seen.count_repeats("a", list(range(16, 80))) == 64


def test_numbers_a_window_below_the_highest_are_neither_counted_nor_recorded() -> None:
    """Documented: a redelivery that old is counted by the agent (resent_messages)."""
    seen = RecentSeqs(window=1024)
    assert seen.count_repeats("a", list(range(1, 2001))) == 0
    assert seen.count_repeats("a", [976]) == 0  # 2000 - 1024: out of the window
    assert seen.count_repeats("a", [977]) == 1  # the lowest one in it
    assert seen.count_repeats("a", list(range(1, 101))) == 0
    assert seen.count_repeats("a", list(range(1, 101))) == 0  # not recorded either
    # Ones that fall out of the window in the same batch (its highest counts).
    assert seen.count_repeats("a", [1500, 3000]) == 0


def test_a_big_jump_forward_forgets_the_window_and_stays_small() -> None:
    seen = RecentSeqs(window=4096)
    assert seen.count_repeats("a", list(range(1, 5001))) == 0
    jump = 10**15
    assert seen.count_repeats("a", [jump]) == 0
    assert seen.count_repeats("a", list(range(4990, 5001))) == 0  # far below now
    assert seen.count_repeats("a", list(range(jump - 10, jump + 11))) == 1
    assert seen.count_repeats("a", [jump - 5, 3 * jump, jump - 5]) == 0  # both out now
    assert seen.count_repeats("a", [3 * jump - 4095, 3 * jump]) == 1
    # A jump inside a batch with gaps, and one just under the window's size.
    assert seen.count_repeats("a", [3 * jump + 4095, 3 * jump + 1]) == 0
    assert seen.count_repeats("a", [3 * jump + 1, 3 * jump + 2]) == 1
    assert seen.count_repeats("a", [3 * jump - 1]) == 0  # 4096 below the highest: out
    assert seen.count_repeats("a", [3 * jump]) == 1  # 4095 below: the lowest one in


def test_the_window_wraps_around_its_ring() -> None:
    seen = RecentSeqs(window=64)
    for start in range(0, 1000, 37):  # runs that straddle the ring's end
        assert seen.count_repeats("a", list(range(start, start + 37))) == 0
        assert seen.count_repeats("a", list(range(start + 10, start + 37))) == 27


def test_the_agents_kept_are_bounded_the_least_recently_stored_forgotten() -> None:
    seen = RecentSeqs(max_agents=3)
    for agent in ("a", "b", "c"):
        seen.count_repeats(agent, [1, 2])
    seen.count_repeats("a", [3])  # a is the most recent now, b the least
    seen.count_repeats("d", [1])
    assert len(seen) == 3
    assert seen.count_repeats("b", [1, 2]) == 0  # forgotten: starts again
    assert seen.count_repeats("a", [1, 2, 3]) == 3  # kept
    assert seen.count_repeats("c", [1]) == 0  # pushed out by b
    for n in range(100):
        seen.count_repeats(f"agent-{n}", [1])
    assert len(seen) == 3


def test_memory_is_bounded_by_agents_times_the_window() -> None:
    """The bitmap is as big empty as full: a few numbers per agent show the bound."""
    seen = RecentSeqs(window=8192, max_agents=50)
    names = [f"booth-{n:05d}" for n in range(200)]  # made before measuring
    batches = [list(range(1, 1001)), [20_000, 12_000, 15_000, 999]]
    tracemalloc.start()
    try:
        for name in names:
            for batch in batches:
                seen.count_repeats(name, batch)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(seen) == 50
    assert used < 50 * (8192 // 8 + 512)  # the bitmap and a little bookkeeping


@pytest.mark.parametrize(("window", "max_agents"), [(0, 1), (12, 1), (8, 0)])
def test_nonsense_bounds_are_refused(window: int, max_agents: int) -> None:
    with pytest.raises(ValueError, match="window"):
        RecentSeqs(window=window, max_agents=max_agents)


class Model:
    """The same rules with a set: what RecentSeqs must answer."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.highest: int | None = None
        self.seen: set[int] = set()

    def count_repeats(self, seqs: list[int]) -> int:
        top = max(seqs)
        self.highest = top if self.highest is None else max(self.highest, top)
        lowest = self.highest - self.window + 1
        self.seen = {seq for seq in self.seen if seq >= lowest}
        repeats = 0
        for seq in seqs:
            if seq < lowest:
                continue
            if seq in self.seen:
                repeats += 1
            self.seen.add(seq)
        return repeats


runs = st.tuples(st.integers(0, 400), st.integers(1, 70), st.booleans()).map(
    lambda run: list(range(run[0], run[0] + run[1]))[:: -1 if run[2] else 1]
)
batches = st.one_of(
    runs,  # consecutive (or descending)
    st.lists(st.integers(0, 400), min_size=1, max_size=20),  # anything
    st.lists(runs, min_size=2, max_size=4).map(
        lambda parts: list(itertools.chain.from_iterable(parts))
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(batches, min_size=1, max_size=30), st.sampled_from([8, 64, 128]))
def test_it_answers_as_a_plain_set_would(calls: list[list[int]], window: int) -> None:
    seen, model = RecentSeqs(window=window), Model(window)
    for seqs in calls:
        assert seen.count_repeats("a", seqs) == model.count_repeats(seqs), seqs
