"""Admission cost per call: API key → RBAC → policy (→ PII scan), as the gateway pays it.

Target (issue 5): key → RBAC → policy ≤ 50 µs per call. Measured here on the real parts:

- **key**: ``StoredKeys.authenticate`` of a ``pod_…`` key created in an ``IdentityStore`` on
  SQLite (the in-memory snapshot lookup and the keyed-hash comparison; no database round trip);
- **rbac**: ``Principal.can("models:call")``;
- **policy**: ``Governance.admit`` for a chat request — the policy decision (memoised per caller,
  model and data class, as in steady traffic; the cold decision is reported too), the ceiling, and
  the PII handling for the destinations (with PII handling off for the first rows, then with the
  default policy's regex scan on a short prompt, a repeated one, and a fresh one each call).

Run: ``python benchmarks/governance/bench_admission.py`` (about 20 s). Prints a Markdown table.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from podium.api.auth import StoredKeys
from podium.finops.ledger import Attribution
from podium.gateway.records import Caller
from podium.gateway.routing import Deployment
from podium.governance.gate import Governance
from podium.governance.identity import IdentityStore
from podium.governance.policy import Policy, Subject
from podium.models.base import ChatRequest, Message
from podium.models.catalog import Catalog
from podium.testing import FakeClock

TARGET_US = 50.0

NO_PII_POLICY = """
policy: bench
default: deny
classifications:
  default: internal
  internal: {destinations: [local, hosted]}
  confidential: {destinations: [local]}
rules:
  - id: eng-local
    when: {teams: [eng]}
    allow: {models: ["local/*"]}
  - id: eng-hosted
    when: {teams: [eng], projects: ["search", "chat*"]}
    allow: {providers: [openai, anthropic], models: ["openai/gpt-4o*", "anthropic/claude-*"]}
  - id: interns
    when: {teams: [interns]}
    deny: {models: ["openai/gpt-4o"]}
pii:
  hosted: allow
  local: allow
"""

PROMPT = "Summarise the attached meeting notes in three bullet points for the weekly update."


def per_call_us(fn: Callable[[], object], *, n: int = 20_000, reps: int = 5) -> float:
    """Median over ``reps`` of the mean µs per call over ``n`` calls."""
    for _ in range(min(n, 2_000)):
        fn()
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(runs)


async def main() -> None:
    catalog = Catalog.builtin()
    hosted = Deployment("openai/gpt-4o-mini", catalog.get("openai/gpt-4o-mini"))
    with tempfile.TemporaryDirectory() as tmp:
        identity = await IdentityStore.open(
            f"sqlite:///{Path(tmp) / 'id.db'}", clock=FakeClock(), pepper=b"p" * 32
        )
        await identity.create_team("eng", actor="bench")
        await identity.create_project("search", team="eng", actor="bench")
        new = await identity.create_key(
            actor="bench", team="eng", project="search", role="developer"
        )
        token = new.key
        keys = StoredKeys(lambda: identity)
        principal = keys.authenticate(token)
        assert principal is not None
        assert principal.can("models:call")
        a = principal.attribution or Attribution()
        caller = Caller(a, subject=principal.subject)
        request = ChatRequest("openai/gpt-4o-mini", (Message("user", PROMPT),))
        plain = Governance(Policy.parse(NO_PII_POLICY))
        pii = Governance(Policy.default())

        def admit(g: Governance, req: ChatRequest) -> object:
            return g.admit(
                caller,
                "openai/gpt-4o-mini",
                req,
                classification=None,
                group_is_model=True,
                reachable=[hosted],
            )

        rows: list[tuple[str, float]] = []
        key_us = per_call_us(lambda: keys.authenticate(token))
        rbac_us = per_call_us(lambda: principal.can("models:call"), n=200_000)
        policy_us = per_call_us(lambda: admit(plain, request))
        rows.append(("key (StoredKeys.authenticate)", key_us))
        rows.append(("rbac (Principal.can)", rbac_us))
        rows.append(("policy (Governance.admit, no PII handling)", policy_us))

        def full() -> object:
            p = keys.authenticate(token)
            assert p is not None
            assert p.can("models:call")
            return admit(plain, request)

        total = per_call_us(full)
        rows.append(("**key → RBAC → policy**", total))
        cold_policy = Policy.parse(NO_PII_POLICY)
        subject = Subject(org=a.org, team=a.team, project=a.project, key_id=a.key_id)
        counter = iter(range(10**9))

        def cold() -> object:
            return cold_policy.decide(subject, f"openai/gpt-4o-{next(counter)}")

        rows.append(("policy decision, cold (memo miss)", per_call_us(cold, n=5_000)))
        rows.append(
            (
                "policy + PII scan, repeated prompt (default policy)",
                per_call_us(lambda: admit(pii, request)),
            )
        )
        fresh = iter(range(10**9))

        def new_prompt() -> object:
            text = f"{PROMPT} Ticket {next(fresh)}."
            return admit(pii, ChatRequest("openai/gpt-4o-mini", (Message("user", text),)))

        rows.append(
            ("policy + PII scan, a new 90-char prompt each call", per_call_us(new_prompt, n=3_000))
        )
        await identity.close()

    print("| admission step | µs per call | target |\n|---|---:|---:|")
    for name, us in rows:
        target = f"≤ {TARGET_US:.0f}" if name.startswith("**") else ""
        print(f"| {name} | {us:.2f} | {target} |")
    print(f"\nkey → RBAC → policy: {total:.1f} µs ({'met' if total <= TARGET_US else 'MISSED'})")


if __name__ == "__main__":
    asyncio.run(main())
