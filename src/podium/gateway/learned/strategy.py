"""``strategy: learned`` — the gateway ranks a group's deployments with a trained router.

Per request: the text of the user messages and the ``task`` tag of the request's metadata (when
the caller sent one) become features; the router predicts, per deployment it knows, the
probability of a good answer and the expected cost; the declared policy picks the first
deployment and orders the rest as fallbacks. A policy mixing two operating points picks one per
request by a hash of the request text (:func:`~podium.gateway.learned.policy.request_key`), so
the same request always routes the same way. Deployments the artefact does not know come last,
in declaration order. The decision's reason and scores carry the numbers, for the audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from podium.gateway.learned.features import Embedder
from podium.gateway.learned.policy import Policy, mix_for_target, rank_one, request_key
from podium.gateway.learned.router import TrainedRouter
from podium.gateway.routing import Deployment, Ranking, RouteContext

__all__ = ["LearnedStrategy", "UnreachableTarget", "resolve_policy"]


class UnreachableTarget(ValueError):
    """No point of the artefact's cross-validated curve reaches the quality target."""


def resolve_policy(router: TrainedRouter, policy: Policy) -> Policy:
    """A ``target`` policy gets the operating point the artefact's curve gives for its target:
    one λ, or a mix of two (:func:`~podium.gateway.learned.policy.mix_for_target`)."""
    if policy.name != "target":
        return policy
    target = policy.target if policy.target is not None else 0.95
    resolved = mix_for_target(router.curve, target)
    if resolved is None:
        best = max((pt.accuracy_ratio for pt in router.curve), default=None)
        measured = f"its best is {best:.3f}" if best is not None else "it has no measured curve"
        raise UnreachableTarget(
            f"no cross-validated operating point reaches {target:g} of the premium model's "
            f"accuracy ({measured})"
        )
    return resolved


def match_name(
    names: Sequence[str], known: Sequence[str], mapping: Mapping[str, str]
) -> str | None:
    """The artefact model one deployment is, from its ``names`` (id, model, aliases):
    ``mapping`` first (keyed by any of them), then a name the artefact uses, then the same
    without a provider prefix (``openai/gpt-4o`` and ``gpt-4o`` match)."""
    hit = next((mapping[n] for n in names if n in mapping), None)
    if hit is None:
        hit = next((n for n in names if n in known), None)
    if hit is None:
        bare = {k.rsplit("/", 1)[-1]: k for k in known}
        hit = next((bare[b] for n in names if (b := n.rsplit("/", 1)[-1]) in bare), None)
    return hit


def match_models(
    deployments: Sequence[Deployment], known: Sequence[str], mapping: Mapping[str, str]
) -> dict[str, str]:
    """Deployment id -> artefact model, for the deployments :func:`match_name` finds."""
    out: dict[str, str] = {}
    for d in deployments:
        hit = match_name([d.id, d.model, *d.info.aliases], known, mapping)
        if hit is not None:
            out[d.id] = hit
    return out


class LearnedStrategy:
    """Ranks by a trained router's predictions under a declared policy."""

    name = "learned"

    def __init__(
        self,
        router: TrainedRouter,
        policy: Policy,
        *,
        models: Mapping[str, str] | None = None,
        embedder: Embedder | None = None,
        task_key: str = "task",
    ) -> None:
        """Args:
        router: The trained router (:func:`podium.gateway.learned.artefact.load`).
        policy: ``threshold``, ``tradeoff`` or ``target`` (resolved here to its operating
            point: one λ or a mix of two).
        models: Deployment id or model → artefact model, where names differ.
        embedder: Needed when the router was trained with embeddings.
        task_key: The metadata key holding the request's task tag.
        """
        if router.spec.embeddings and embedder is None:
            raise ValueError("this router was trained with embeddings: pass an embedder")
        self.router = router
        self.policy = resolve_policy(router, policy)
        self.models = dict(models or {})
        self.embedder = embedder
        self.task_key = task_key
        self._index = {m: j for j, m in enumerate(router.models)}

    def rank(self, candidates: Sequence[Deployment], ctx: RouteContext) -> Ranking:
        matched = match_models(candidates, self.router.models, self.models)
        known = [d for d in candidates if d.id in matched]
        unknown = [d for d in candidates if d.id not in matched]
        scores = {d.id: "not in the router artefact" for d in unknown}
        if not known:
            return Ranking(tuple(candidates), "no deployment is known to the router", scores)
        chat = ctx.request.chat
        text = "\n".join(m.text for m in chat.messages if m.role == "user") or "\n".join(
            m.text for m in chat.messages
        )
        task = ctx.request.metadata.get(self.task_key)
        p_all, c_all = self.router.predict([text], [task], embedder=self.embedder)
        cols = [self._index[matched[d.id]] for d in known]
        p, c = p_all[0, cols], c_all[0, cols]
        order = rank_one(np.asarray(p), np.asarray(c), self.policy, request_key(text))
        ranked = [known[j] for j in order] + unknown
        for j, d in enumerate(known):
            scores[d.id] = f"p={p[j]:.3f} cost={c[j]:.3f}xpremium"
        first = order[0]
        why = (
            f"learned ({self.policy.describe()}): {matched[known[first].id]} "
            f"p={p[first]:.3f} at {c[first]:.3f}x the premium cost"
            + (f", task {task!r}" if task else "")
        )
        return Ranking(tuple(ranked), why, scores)
