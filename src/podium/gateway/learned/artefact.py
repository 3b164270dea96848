"""The trained router on disk: a JSON file and an ``.npz`` of weights beside it — no pickle.

``router.json`` holds the format name and version, the models, the premium model and its
reference cost, the feature spec, the cross-validated curve, training facts, the weights file's
name and SHA-256, and ``content_sha256``: the SHA-256 of the JSON itself (canonical, without that
field) followed by the weights' digest. :func:`load` refuses a file of another format or
version, changed weights, or a changed JSON, naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from podium.errors import ConfigError
from podium.gateway.learned.features import TEXT_FEATURES, FeatureSpec
from podium.gateway.learned.policy import CurvePoint
from podium.gateway.learned.predictor import CostModel, QualityPredictor
from podium.gateway.learned.router import TrainedRouter

__all__ = ["FORMAT", "VERSION", "ArtefactError", "load", "save"]

FORMAT = "podium-learned-router"
VERSION = 2
_ARRAYS = ("mean", "scale", "coef", "intercept", "cost_coef")


class ArtefactError(ConfigError):
    """A router artefact is missing, of another format or version, or altered."""


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "content_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _content_hash(doc: dict[str, Any], weights_sha: str) -> str:
    return hashlib.sha256(_canonical(doc) + weights_sha.encode()).hexdigest()


def save(router: TrainedRouter, path: Path) -> str:
    """Write ``path`` (JSON) and its weights (same name, ``.npz``); return the content hash."""
    path = Path(path)
    weights = path.with_suffix(".npz")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        mean=router.quality.mean,
        scale=router.quality.scale,
        coef=router.quality.coef,
        intercept=router.quality.intercept,
        cost_coef=router.cost.coef,
        prior=router.quality.prior if router.quality.prior is not None else np.zeros((0, 0)),
    )
    data = buffer.getvalue()
    weights_sha = hashlib.sha256(data).hexdigest()
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "models": list(router.models),
        "premium": router.premium,
        "reference_cost_usd": router.reference_cost,
        "prior_blend": router.quality.blend,
        "features": router.spec.to_json(),
        "curve": [[pt.lam, pt.accuracy_ratio, pt.cost_ratio] for pt in router.curve],
        "info": router.info,
        "weights": weights.name,
        "weights_sha256": weights_sha,
    }
    doc["content_sha256"] = _content_hash(doc, weights_sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(data)
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return str(doc["content_sha256"])


def load(path: Path) -> TrainedRouter:
    """Read an artefact written by :func:`save` (``ArtefactError`` says what is wrong)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtefactError(f"{path}: cannot read the router artefact: {exc}") from None
    except ValueError as exc:
        raise ArtefactError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ArtefactError(f"{path}: not a {FORMAT} artefact")
    if doc.get("version") != VERSION:
        raise ArtefactError(
            f"{path}: artefact version {doc.get('version')!r}, this Podium reads version "
            f"{VERSION}; retrain it with 'podium route train'"
        )
    try:
        weights = path.parent / str(doc["weights"])
        data = weights.read_bytes()
        if hashlib.sha256(data).hexdigest() != doc["weights_sha256"]:
            raise ArtefactError(f"{weights}: the weights do not match the artefact's SHA-256")
        if _content_hash(doc, doc["weights_sha256"]) != doc["content_sha256"]:
            raise ArtefactError(f"{path}: the artefact was changed after training (hash)")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k], dtype=np.float64) for k in _ARRAYS}
            prior = np.asarray(npz["prior"], dtype=np.float64)
        blend = float(doc["prior_blend"])
        spec = FeatureSpec.from_json(doc["features"])
        models = tuple(str(m) for m in doc["models"])
        curve = tuple(CurvePoint(float(a), float(b), float(c)) for a, b, c in doc["curve"])
        premium, reference = str(doc["premium"]), float(doc["reference_cost_usd"])
    except ArtefactError:
        raise
    except OSError as exc:
        raise ArtefactError(f"{path}: cannot read its weights: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtefactError(f"{path}: malformed artefact ({exc!r})") from None
    if spec.text_features != TEXT_FEATURES:
        raise ArtefactError(
            f"{path}: trained with other text features than this Podium computes; retrain it"
        )
    if arrays["coef"].shape != (len(models), spec.width) or premium not in models:
        raise ArtefactError(f"{path}: weights do not fit its models and features")
    if prior.size and prior.shape != (len(spec.tasks) + 1, len(models)):
        raise ArtefactError(f"{path}: the task prior does not fit its models and tasks")
    quality = QualityPredictor(
        models,
        arrays["mean"],
        arrays["scale"],
        arrays["coef"],
        arrays["intercept"],
        prior if prior.size else None,
        blend if prior.size else 1.0,
    )
    info = doc.get("info") or {}
    return TrainedRouter(
        spec, quality, CostModel(arrays["cost_coef"]), premium, reference, curve, dict(info)
    )
