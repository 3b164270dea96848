"""Ids that sort by creation time: request ids, budget reservations, workflow runs."""

from __future__ import annotations

import re
from decimal import Decimal

from podium.finops.budgets import Budget, Budgets, MemoryBudgetStore, ReservationRequest
from podium.finops.ledger import Attribution
from podium.gateway.records import new_request_id
from podium.testing import FakeClock
from podium.types import ordered_id


def test_ordered_ids_sort_by_time_and_never_repeat() -> None:
    clock = FakeClock(1_764_000_000.0)
    ids: list[str] = []
    for _ in range(2_000):
        ids += [ordered_id(clock.now()) for _ in range(5)]  # five in the same millisecond
        clock.advance(0.0007)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    prefixes = [i[:12] for i in ids]
    assert prefixes == sorted(prefixes)
    assert ids[0][:12] == f"{1_764_000_000_000:012x}"
    assert len(ordered_id(clock.now(), random_bytes=5)) == 22


def test_request_ids_keep_their_shape_and_follow_the_clock() -> None:
    early, late = new_request_id(1_764_000_000.0), new_request_id(1_764_000_000.002)
    assert re.fullmatch(r"req_[0-9a-f]{32}", early)
    assert early < late
    assert re.fullmatch(r"req_[0-9a-f]{32}", new_request_id())  # the wall clock


async def test_budget_reservations_are_ordered_by_the_injected_clock() -> None:
    clock = FakeClock(1_764_000_000.0)
    budget = Budget("all", "org", "default", Decimal(100), "daily")
    budgets = Budgets(MemoryBudgetStore(), [budget], clock=clock)
    made = []
    for i in range(20):
        held = await budgets.reserve(
            ReservationRequest(f"req-{i}", Attribution(org="default"), Decimal("0.01"))
        )
        made.append(held.id)
        clock.advance(0.01)
    assert made == sorted(made)  # 10 ms apart: ordered by their times alone
    assert made[0][:12] == f"{1_764_000_000_000:012x}"
