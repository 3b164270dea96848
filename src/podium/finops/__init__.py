"""FinOps: what every model call costs, who pays, and limits that concurrent calls cannot break.

- :mod:`~podium.finops.pricing` — exact ``Decimal`` cost of a call from the catalog's prices.
- :mod:`~podium.finops.ledger` — append-only, lean cost rows; rollups with exact sums.
- :mod:`~podium.finops.budgets` — hard and soft budgets per scope and window, enforced by atomic
  reservation of the worst-case cost (memory, SQL and Redis backends).
- :mod:`~podium.finops.reports` — spend by any dimension and period; savings against a baseline.
"""

from podium.finops.budgets import (
    Budget,
    BudgetAlert,
    BudgetBackend,
    BudgetExceeded,
    Budgets,
    BudgetStatus,
    MemoryBudgetStore,
    RedisBudgetStore,
    Reservation,
    ReservationNotFound,
    ReservationRequest,
    Settlement,
    SQLBudgetStore,
)
from podium.finops.ledger import (
    Attribution,
    Dimension,
    Ledger,
    LedgerEntry,
    LedgerQuery,
    MemoryLedger,
    SpendRow,
    SQLLedger,
)
from podium.finops.pricing import Cost, UnknownPrice, price, worst_case
from podium.finops.reports import Reports, Savings

__all__ = [
    "Attribution",
    "Budget",
    "BudgetAlert",
    "BudgetBackend",
    "BudgetExceeded",
    "BudgetStatus",
    "Budgets",
    "Cost",
    "Dimension",
    "Ledger",
    "LedgerEntry",
    "LedgerQuery",
    "MemoryBudgetStore",
    "MemoryLedger",
    "RedisBudgetStore",
    "Reports",
    "Reservation",
    "ReservationNotFound",
    "ReservationRequest",
    "SQLBudgetStore",
    "SQLLedger",
    "Savings",
    "Settlement",
    "SpendRow",
    "UnknownPrice",
    "price",
    "worst_case",
]
