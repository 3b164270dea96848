"""Synthetic routing data: a cheap model right on easy questions, a mid one on easy and medium,
a premium one on almost everything — with questions whose wording says which they are."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from podium.gateway.learned.data import Example, parse_examples

MODELS = {"cheap": 0.0001, "mid": 0.0004, "premium": 0.005}
FEWSHOT = "Q: What is 1 + 1?\nA) 2\nB) 3\nAnswer: A\n\nQ: Sky colour?\nA) blue\nB) red\nAnswer: A"


def synthetic_rows(n: int = 240, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        level = i % 3  # 0 easy, 1 medium, 2 hard
        task = "quiz" if i % 2 else "code"
        words = {0: "simple short", 1: "moderately tricky", 2: "intricate multi-step convoluted"}
        question = f"Question {i}: a {words[level]} problem about item {rng.randint(0, 999)}?"
        prompt = f"{FEWSHOT}\n\n{question}\nA) yes\nB) no\nAnswer:" if task == "quiz" else question
        flip = rng.random() < 0.05
        right = {
            "cheap": level == 0,
            "mid": level <= 1,
            "premium": level <= 2 and not flip,
        }
        models = {
            m: {"correct": int(right[m]), "cost_usd": round(cost * (1 + len(prompt) / 2000), 8)}
            for m, cost in MODELS.items()
        }
        rows.append({"id": f"s{i}", "task": task, "prompt": prompt, "models": models})
    return rows


@pytest.fixture(scope="session")
def rows() -> list[dict[str, Any]]:
    return synthetic_rows()


@pytest.fixture(scope="session")
def examples(rows: list[dict[str, Any]]) -> list[Example]:
    return parse_examples([json.dumps(r) for r in rows])


@pytest.fixture
def data_file(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "routing.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
