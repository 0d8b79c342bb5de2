"""Activation extraction and UMAP cost, and evaluation profiles per projection point, on the demo family."""
import time

from common import DEMO, fresh_cache, save, timed
from explorer.activations import builtin_prompts, extract
from explorer.embeddings import embed
from explorer.family import load_family
from explorer.scores import PointScorer


def main() -> None:
    results = {}
    with fresh_cache():
        family = load_family(DEMO)
        prompts = {"harmful": builtin_prompts("harmful", 100)}
        start = time.perf_counter()
        extract(family, "aligned", prompts)
        results["extraction_per_100_prompts_s"] = time.perf_counter() - start
        sets = {name: extract(family, "aligned", {name: builtin_prompts(name)})[name][:, 20]
                for name in ("useful", "harmful", "benign")}
        embed(sets, "umap")  # compiles numba's kernels once, as the first UMAP of an app session does
        results["umap_per_layer_768_points_s"] = timed(lambda: embed(sets, "umap"))
        results["pca_per_layer_768_points_s"] = timed(lambda: embed(sets, "pca"))
        scorer = PointScorer(family)
        scorer.score("useful", "same", "alignment", 0.31, profile="smoke")  # loads the model and builds bases
        results["quick_point_s"] = timed(lambda: scorer.score("contaminated", "orth", "random", 0.33, profile="quick"))
        results["full_point_s"] = timed(lambda: scorer.score("contaminated", "orth", "random", 0.33, profile="full"))
    save("activations_eval", {k: round(v, 2) for k, v in results.items()})


if __name__ == "__main__":
    main()
