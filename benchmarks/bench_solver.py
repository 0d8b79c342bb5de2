"""The weight pass's solver on the demo family (issue 22): time against LAPACK's SVD, memory, accuracy.

- the floor: `torch.linalg.svd` (thin, float32) of every matrix of both updates of the pair, timed alone on
  matrices already in memory;
- `mso` of that pair, all 11 default energies, on an empty cache, in the same run: in-process (the engine's
  `update_mso`) and as the whole CLI command (interpreter start and imports included);
- peak RSS of the `mso`, `project` and `sweep` commands (`/usr/bin/time -f %M`), against the largest checkpoint;
- accuracy against LAPACK's SVD in float64, tensor by tensor: singular values (as `spectra` computes them),
  relative to each tensor's largest; and the projection energies of a task update in the top-k alignment
  subspace for every k (as `project` computes them, float32 bases), relative to the update's total energy.

    python benchmarks/bench_solver.py [FAMILY]   # writes benchmarks/results/solver.json (about 15 minutes on 2 cores)

FAMILY defaults to the demo (families/demo.toml); demo-broad's checkpoints have the same shapes.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
import tempfile
import time

import numpy as np
import torch
from common import DEMO, ROOT, fresh_cache, save

from explorer.checkpoints.family import load_family
from explorer.weights.mso import update_mso
from explorer.weights.projection import oriented
from explorer.weights.subspaces import as_matrix, left_svd, singular_values
from explorer.weights.updates import update_tensor

PAIR = ("useful", "harmful")


def floor_s(family) -> float:
    total = 0.0
    for name in family.tensor_names:
        for update in PAIR:
            matrix = as_matrix(update_tensor(family, update, name))
            start = time.perf_counter()
            torch.linalg.svd(matrix, full_matrices=False)
            total += time.perf_counter() - start
    return total


def command(args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run(["/usr/bin/time", "-f", "%M %e", sys.executable, "-m", "explorer", *args],
                             env={**os.environ, "EXPLORER_CACHE_DIR": cache}, capture_output=True, text=True,
                             cwd=ROOT)
    if out.returncode:
        raise SystemExit(out.stderr)
    rss_kb, wall = out.stderr.strip().splitlines()[-1].split()
    return {"wall_s": float(wall), "peak_rss_mb": round(int(rss_kb) / 1024)}


def accuracy(family) -> dict:
    worst_values, worst_energy = 0.0, 0.0
    for name in family.tensor_names:
        for update in ("alignment", "useful"):
            matrix = as_matrix(update_tensor(family, update, name))
            exact = torch.linalg.svdvals(matrix.double())
            if exact[0] > 0:
                worst_values = max(worst_values, float((singular_values(matrix) - exact).abs().max() / exact[0]))
        align = oriented(update_tensor(family, "alignment", name))
        task = oriented(update_tensor(family, "useful", name)).double()
        exact_basis = torch.linalg.svd(align.double(), full_matrices=False)[0]
        ours = np.cumsum(((left_svd(align)[0].double().T @ task) ** 2).sum(1).numpy())
        theirs = np.cumsum(((exact_basis.T @ task) ** 2).sum(1).numpy())
        if theirs[-1] > 0:
            worst_energy = max(worst_energy, float(np.abs(ours - theirs).max() / float((task**2).sum())))
    return {"singular_values_max_error_of_largest": worst_values,
            "projection_energy_max_error_of_total": worst_energy}


def main(family_file: Path) -> None:
    results = {"family": family_file.stem}
    family = load_family(family_file)
    family.fingerprints()
    results["svd_floor_s"] = round(floor_s(family), 2)
    with fresh_cache():
        family = load_family(family_file)
        start = time.perf_counter()
        update_mso(family, [PAIR])
        results["mso_in_process_s"] = round(time.perf_counter() - start, 2)
    results["mso_command"] = command(["mso", str(family_file), "--a", PAIR[0], "--b", PAIR[1],
                                      "--out", "/tmp/bench-mso.csv"])
    results["mso_in_process_over_floor"] = round(results["mso_in_process_s"] / results["svd_floor_s"], 3)
    results["mso_command_over_floor"] = round(results["mso_command"]["wall_s"] / results["svd_floor_s"], 3)
    results["project_command"] = command(["project", str(family_file), "--variant", "useful", "--method", "same",
                                          "--subspace", "alignment", "--frac", "0.3", "--json"])
    results["sweep_command"] = command(["sweep", str(family_file)])
    checkpoint_mb = max(sum(f.stat().st_size for f in family.store(m).folder.glob("*.safetensors"))
                        for m in family.members) / 2**20
    results["largest_checkpoint_mb"] = round(checkpoint_mb)
    results["peak_rss_over_checkpoint"] = {k: round(results[f"{k}_command"]["peak_rss_mb"] / checkpoint_mb, 2)
                                           for k in ("mso", "project", "sweep")}
    results["accuracy_against_lapack_float64"] = accuracy(load_family(family_file))
    save("solver", results)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else DEMO)
