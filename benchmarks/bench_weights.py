"""Projection and MSO cost on the demo family (issue 2 targets); peak memory is measured by bench_solver.py."""
import numpy as np
from common import DEMO, fresh_cache, save, timed

from explorer.checkpoints.family import load_family
from explorer.checkpoints.models import load_model
from explorer.weights.mso import update_mso
from explorer.weights.projection import apply_projection, projection_stats


def main() -> None:
    results = {}
    with fresh_cache():
        family = load_family(DEMO)
        family.fingerprints()
        results["svd_pass_s"] = svd = timed(lambda: projection_stats(family, "useful"))
        stats = projection_stats(family, "useful")
        results["extra_point_metrics_s"] = point = timed(lambda: stats.point("orth", "random-k", 0.37), repeat=200)
        projection_stats(family, "useful", keep_bases=True)
        model = load_model(family, "aligned", device="cpu")
        results["extra_point_weights_s"] = weights = timed(
            lambda: apply_projection(model, family, "useful", "same", "alignment", 0.37))
        results["metrics_over_svd_pass"] = point / svd
        results["weights_over_svd_pass"] = weights / svd
    with fresh_cache():
        family = load_family(DEMO)
        results["mso_one_eta_s"] = one = timed(lambda: update_mso(family, [("useful", "harmful")], [0.5]))
    with fresh_cache():
        family = load_family(DEMO)
        results["mso_eleven_etas_s"] = eleven = timed(lambda: update_mso(family, [("useful", "harmful")]))
        results["mso_eleven_over_one"] = eleven / one
    save("weights", {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()})


if __name__ == "__main__":
    np.random.seed(0)
    main()
