"""Scores of family members and of projected points, cached by checkpoint fingerprints and profile."""
from __future__ import annotations

import functools
import json
from typing import Callable, Iterator

from explorer.checkpoints.family import ALIGNED, Family
from explorer.checkpoints.models import load_model, load_tokenizer
from explorer.core.cache import cache_key, cached_json, read_verified, result_path, write_json
from explorer.core.errors import ParameterError
from explorer.core.progress import Callback, track
from explorer.core.runners import active_runner
from explorer.evaluation.evaluate import PROFILES, evaluate, style_adoption
from explorer.evaluation.stream import evaluate_stream
from explorer.weights.lox import apply_lox, check_alpha
from explorer.weights.projection import PAPER_SIDE, InPlaceProjector, check_point
from explorer.weights.safelora import METHOD as SAFELORA
from explorer.weights.safelora import apply_safelora, safelora_stats


def _profile(name: str):
    if name not in PROFILES:
        raise ParameterError(f"unknown evaluation profile {name!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[name]


def member_scores(family: Family, member: str, profile: str = "full", callback: Callback | None = None) -> dict:
    profile_ = _profile(profile)

    @functools.cache
    def loaded() -> tuple:  # the model is loaded at most once, and only if a score is not cached
        return load_model(family, member), load_tokenizer(family, member)

    scores = cached_json("scores", _member_key("member-scores", family, member, profile),
                         lambda: evaluate(*loaded(), profile_, callback))
    style = cached_json("scores", _member_key("member-style", family, member, profile),
                        lambda: style_adoption(*loaded(), profile_))
    return merge_scores(scores, style)


def streamed_scores(key: str, prepare: Callable[[], tuple], profile: str, callback: Callback | None = None
                    ) -> Iterator[dict]:
    """Scores cached under `key` (kind "scores"), streamed: the cached result at once, else the estimates after
    each round of evaluate_stream on `prepare()`'s (model, tokenizer, extra fields), ending with the complete
    scores, which are then cached. Per-prompt outcomes are kept in `<key>.partial.json` as they arrive, so an
    evaluation left unfinished resumes where it stopped."""
    profile_ = _profile(profile)
    done_path, partial_path = result_path("scores", key, ".json"), result_path("scores", key, ".partial.json")
    done = read_verified(done_path, lambda p: json.loads(p.read_text()))
    if done is not None:
        yield done
        return
    model, tokenizer, extra = prepare()
    state = read_verified(partial_path, lambda p: json.loads(p.read_text()))
    scores = {}
    for scores in evaluate_stream(model, tokenizer, profile_, state, keep=lambda s: write_json(partial_path, s),
                                  callback=callback):
        scores = {**extra, **scores}
        if scores["progress"][0] < scores["progress"][1]:
            yield scores
    final = {k: v for k, v in scores.items() if k != "progress"}
    write_json(done_path, final)
    partial_path.unlink(missing_ok=True)
    yield final


def member_scores_stream(family: Family, member: str, profile: str = "quick", callback: Callback | None = None
                         ) -> Iterator[dict]:
    """member_scores' four scores (house style aside) as they arrive, cached under the same key."""
    yield from streamed_scores(_member_key("member-scores", family, member, profile),
                               lambda: (load_model(family, member), load_tokenizer(family, member), {}), profile,
                               callback)


def _member_key(kind: str, family: Family, member: str, profile: str) -> str:
    return cache_key(kind, member=family.store(member).fingerprint(), profile=_profile(profile))


def merge_scores(scores: dict, extra: dict) -> dict:
    """Scores and extra scores of the same member: their counts, outcomes and samples joined."""
    merged = {**scores, **extra}
    for part in ("counts", "outcomes", "samples"):
        merged[part] = {**scores.get(part, {}), **extra.get(part, {})}
    return merged


def score_members(family: Family, members: list[str], profile: str = "full",
                  callback: Callback | None = None) -> dict[str, dict]:
    """member_scores of several members: one after another here, in parallel on the active runner (a Ray cluster)."""
    runner = active_runner()
    if runner is not None:
        return dict(zip(members, runner.map_members(family, member_scores, members, (profile,), "member scores",
                                                    callback)))
    return {m: member_scores(family, m, profile, callback) for m in track(members, "member scores")}


def point_key(family: Family, variant: str, method: str, subspace: str, frac: float, seed: int, profile: str,
              side: str = PAPER_SIDE) -> str:
    """The cache key of a scored projection point (kind "scores")."""
    check_point(method, subspace, frac, side)
    prints = family.fingerprints()
    return cache_key("point-scores", base=prints["base"], aligned=prints[ALIGNED], variant=prints.get(variant),
                     method=method, subspace=subspace, frac=round(frac, 6), seed=seed, profile=_profile(profile),
                     side=side)


class PointScorer:
    """Evaluates projection and Safe LoRA points of one family, loading the aligned model once and writing each
    point's weights into it in place."""

    def __init__(self, family: Family):
        self.family = family
        self._model = None
        self._tokenizer = None
        self._projector: InPlaceProjector | None = None

    def score(self, variant: str, method: str, subspace: str, frac: float, seed: int = 0, profile: str = "full",
              callback: Callback | None = None, side: str = PAPER_SIDE) -> dict:
        profile_ = _profile(profile)
        key = point_key(self.family, variant, method, subspace, frac, seed, profile, side)

        def compute() -> dict:
            metrics = self.project(variant, method, subspace, frac, seed, callback, side)
            return {**metrics, **evaluate(self._model, self._tokenizer, profile_, callback)}

        return cached_json("scores", key, compute)

    def project(self, variant: str, method: str, subspace: str, frac: float, seed: int = 0,
                callback: Callback | None = None, side: str = PAPER_SIDE) -> dict:
        """Write the point into the loaded aligned model (only the directions that changed since the last point
        of the same setting); return its metrics."""
        self._aligned_model()
        return self._projector.apply(variant, method, subspace, frac, seed, callback, side)

    def score_stream(self, variant: str, method: str, subspace: str, frac: float, seed: int = 0,
                     profile: str = "quick", callback: Callback | None = None, side: str = PAPER_SIDE
                     ) -> Iterator[dict]:
        """The point's scores as they arrive: after each round of prompts, the estimates and intervals so far
        (`progress` = prompts scored, of how many); the last is complete and cached like score()'s. Each round's
        per-prompt outcomes are kept on disk, so a point left before it completes resumes where it stopped."""
        key = point_key(self.family, variant, method, subspace, frac, seed, profile, side)

        def prepare() -> tuple:
            metrics = self.project(variant, method, subspace, frac, seed, callback, side)
            return self._model, self._tokenizer, metrics

        yield from streamed_scores(key, prepare, profile, callback)

    def score_safelora(self, variant: str, threshold: float | None = None, layers: int | None = None,
                       profile: str = "full", callback: Callback | None = None) -> dict:
        """A Safe LoRA point, cached by the set of tensors it projects: two settings that project the same
        tensors make the same model and share one evaluation."""
        profile_ = _profile(profile)
        stats = safelora_stats(self.family, variant, callback)
        point = {"variant": variant, "method": SAFELORA, "threshold": threshold, "layers": layers,
                 **stats.point(threshold, layers)}
        prints = self.family.fingerprints()
        key = cache_key("safelora-scores", base=prints["base"], aligned=prints[ALIGNED], variant=prints[variant],
                        projected=sorted(stats.projected(threshold, layers)), profile=profile_)

        def compute() -> dict:
            model = self._aligned_model()
            apply_safelora(model, self.family, variant, threshold, layers, callback)
            self._projector.forget()
            return evaluate(model, self._tokenizer, profile_, callback)

        return {**point, **cached_json("scores", key, compute)}

    def score_lox(self, alpha: float, frac: float, profile: str = "full", callback: Callback | None = None) -> dict:
        """The aligned model extrapolated by LoX at (α, ρ), scored; cached by the base and aligned checkpoints."""
        profile_ = _profile(profile)
        prints = self.family.fingerprints()
        key = cache_key("lox-scores", base=prints["base"], aligned=prints[ALIGNED], alpha=check_alpha(alpha),
                        frac=round(frac, 6), profile=profile_)

        def compute() -> dict:
            metrics = self.lox_model(alpha, frac, callback)
            return {**metrics, **evaluate(self._model, self._tokenizer, profile_, callback)}

        return cached_json("scores", key, compute)

    def lox_model(self, alpha: float, frac: float, callback: Callback | None = None) -> dict:
        """Write LoX's extrapolated model at (α, ρ) into the loaded model (`model`, `tokenizer`); its metrics."""
        model = self._aligned_model()
        self._projector.forget()
        return apply_lox(model, self.family, alpha, frac, callback)

    @property
    def model(self):
        return self._aligned_model()

    @property
    def tokenizer(self):
        self._aligned_model()
        return self._tokenizer

    def _aligned_model(self):
        if self._model is None:
            self._model = load_model(self.family, ALIGNED)
            self._tokenizer = load_tokenizer(self.family, ALIGNED)
            self._projector = InPlaceProjector(self._model, self.family)
        return self._model


def score_points(family: Family, points: list[tuple[str, str, str, float]], seed: int = 0, profile: str = "full",
                 callback: Callback | None = None, side: str = PAPER_SIDE) -> list[dict]:
    """Scores of (variant, method, subspace, frac) points, in order, each cached as it completes: here with one
    loaded model, or spread over the actors of the active runner (a Ray cluster, the paper's side only)."""
    runner = active_runner()
    if runner is not None:
        if side != PAPER_SIDE:
            raise ParameterError(f"on a Ray cluster points are scored on the paper's {PAPER_SIDE} side only; "
                                 f"drop --ray to score --side {side}")
        return runner.score_points(family, points, seed, profile, callback)
    scorer = PointScorer(family)
    return [scorer.score(*point, seed, profile, side=side)
            for point in track(points, "projection points", callback=callback)]
