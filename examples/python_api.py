"""A workflow written in Python rather than YAML — the same model, the same engine.

Run it with ``podium run examples/python_api.py:workflow --input text="…"`` or from Python::

    import podium
    from examples.python_api import workflow
    print(podium.run_sync(workflow, {"text": "Podium is great"}).output)
"""

from __future__ import annotations

from podium.dsl import call, parallel
from podium.dsl import workflow as define


async def words(text: str) -> list[str]:
    return text.split()


def longest(items: list[str]) -> str:
    return max(items, key=len) if items else ""


def count(items: list[str]) -> int:
    return len(items)


workflow = define(
    "python-api",
    call("split", words, text="{{ inputs.text }}"),
    parallel(
        "stats",
        call("longest", longest, items="{{ steps.split.output }}"),
        call("count", count, items="{{ steps.split.output }}"),
    ),
    inputs={"text": "string"},
    output="{{ steps.stats.output }}",
)
