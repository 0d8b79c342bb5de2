"""Scores of family members and of projected points, cached by checkpoint fingerprints and profile."""
from __future__ import annotations

from explorer.checkpoints.family import ALIGNED, Family
from explorer.checkpoints.models import load_model, load_tokenizer
from explorer.core.cache import cache_key, cached_json
from explorer.core.errors import ParameterError
from explorer.core.progress import Callback, track
from explorer.core.runners import active_runner
from explorer.evaluation.evaluate import PROFILES, evaluate
from explorer.weights.projection import apply_projection, check_point


def _profile(name: str):
    if name not in PROFILES:
        raise ParameterError(f"unknown evaluation profile {name!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[name]


def member_scores(family: Family, member: str, profile: str = "full", callback: Callback | None = None) -> dict:
    profile_ = _profile(profile)
    key = cache_key("member-scores", member=family.store(member).fingerprint(), profile=profile_)

    def compute() -> dict:
        model = load_model(family, member)
        return evaluate(model, load_tokenizer(family, member), profile_, callback)

    return cached_json("scores", key, compute)


def score_members(family: Family, members: list[str], profile: str = "full",
                  callback: Callback | None = None) -> dict[str, dict]:
    """member_scores of several members: one after another here, in parallel on the active runner (a Ray cluster)."""
    runner = active_runner()
    if runner is not None:
        return dict(zip(members, runner.map_members(family, member_scores, members, (profile,), "member scores",
                                                    callback)))
    return {m: member_scores(family, m, profile, callback) for m in track(members, "member scores")}


def point_key(family: Family, variant: str, method: str, subspace: str, frac: float, seed: int, profile: str) -> str:
    """The cache key of a scored projection point (kind "scores")."""
    check_point(method, subspace, frac)
    prints = family.fingerprints()
    return cache_key("point-scores", base=prints["base"], aligned=prints[ALIGNED], variant=prints.get(variant),
                     method=method, subspace=subspace, frac=round(frac, 6), seed=seed, profile=_profile(profile))


class PointScorer:
    """Evaluates projection points of one family, loading the aligned model once and projecting in place."""

    def __init__(self, family: Family):
        self.family = family
        self._model = None
        self._tokenizer = None

    def score(self, variant: str, method: str, subspace: str, frac: float, seed: int = 0, profile: str = "full",
              callback: Callback | None = None) -> dict:
        profile_ = _profile(profile)
        key = point_key(self.family, variant, method, subspace, frac, seed, profile)

        def compute() -> dict:
            if self._model is None:
                self._model = load_model(self.family, ALIGNED)
                self._tokenizer = load_tokenizer(self.family, ALIGNED)
            metrics = apply_projection(self._model, self.family, variant, method, subspace, frac, seed, callback)
            return {**metrics, **evaluate(self._model, self._tokenizer, profile_, callback)}

        return cached_json("scores", key, compute)


def score_points(family: Family, points: list[tuple[str, str, str, float]], seed: int = 0, profile: str = "full",
                 callback: Callback | None = None) -> list[dict]:
    """Scores of (variant, method, subspace, frac) points, in order, each cached as it completes: here with one
    loaded model, or spread over the actors of the active runner (a Ray cluster)."""
    runner = active_runner()
    if runner is not None:
        return runner.score_points(family, points, seed, profile, callback)
    scorer = PointScorer(family)
    return [scorer.score(*point, seed, profile) for point in track(points, "projection points", callback=callback)]
