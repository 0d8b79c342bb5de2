"""Projection and MSO cost on the demo family, and peak memory of `mso` and `project` (issue 2 targets)."""
import subprocess
import sys

import numpy as np
from common import DEMO, fresh_cache, save, timed

from explorer.checkpoints.family import load_family
from explorer.checkpoints.models import load_model
from explorer.weights.mso import update_mso
from explorer.weights.projection import apply_projection, projection_stats


def peak_rss_mb(args: list[str]) -> float:
    """Peak resident memory of a CLI run, in MB."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "explorer", *args],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024


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
    checkpoint_mb = sum(f.stat().st_size for f in family.store("base").folder.glob("*.safetensors")) / 2**20
    results["checkpoint_mb"] = checkpoint_mb
    with fresh_cache():
        results["peak_rss_mso_mb"] = peak_rss_mb(["mso", str(DEMO), "--a", "useful", "--b", "harmful",
                                                  "--out", "/tmp/bench-mso.csv"])
    with fresh_cache():
        results["peak_rss_project_mb"] = peak_rss_mb(["project", str(DEMO), "--variant", "useful", "--method",
                                                      "same", "--subspace", "alignment", "--frac", "0.3", "--json"])
    results["peak_rss_over_checkpoint"] = max(results["peak_rss_mso_mb"], results["peak_rss_project_mb"]) / checkpoint_mb
    save("weights", {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()})


if __name__ == "__main__":
    np.random.seed(0)
    main()
