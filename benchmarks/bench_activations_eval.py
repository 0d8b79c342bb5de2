"""Activation extraction and UMAP cost, and the evaluation profiles per projection point, on the demo family.

Extraction and UMAP run on an empty cache; the projection points reuse the SVD bases that precompute stored,
as the app's live points do, at a ρ outside the grid so that nothing is served from the cache.
"""
import time

from common import DEMO, fresh_cache, save, timed

from explorer.activations.embeddings import embed
from explorer.activations.extract import builtin_prompts, extract
from explorer.checkpoints.family import load_family
from explorer.evaluation.scores import PointScorer


def main() -> None:
    results = {}
    with fresh_cache():
        family = load_family(DEMO)
        start = time.perf_counter()
        extract(family, "aligned", {"harmful": builtin_prompts("harmful", 100)})
        results["extraction_per_100_prompts_s"] = time.perf_counter() - start
        states = extract(family, "aligned", {name: builtin_prompts(name) for name in ("useful", "harmful", "benign")})
        layer = {name: array[:, 20] for name, array in states.items()}
        embed(layer, "umap")  # compiles numba's kernels once, as the first UMAP of a session does
        results["umap_per_layer_768_points_s"] = timed(lambda: embed(layer, "umap"))
        results["pca_per_layer_768_points_s"] = timed(lambda: embed(layer, "pca"))
    family = load_family(DEMO)
    scorer = PointScorer(family)
    scorer.score("useful", "same", "alignment", 0.99, profile="quick")  # a grid point: loads the aligned model
    results["quick_point_s"] = timed(lambda: scorer.score("contaminated", "orth", "random", 0.33, profile="quick"))
    results["full_point_s"] = timed(lambda: scorer.score("contaminated", "orth", "random", 0.37, profile="full"))
    save("activations_eval", {k: round(v, 2) for k, v in results.items()})


if __name__ == "__main__":
    main()
