"""The demo family's weight pass on a local Ray with 2 workers against the plain path, and float32 SVD times of
single matrices (the per-tensor cost that a 70B estimate scales up).

`python benchmarks/bench_ray.py svd` and `python benchmarks/bench_ray.py demo FAMILY.toml` each add their keys to
benchmarks/results/ray.json. The weight pass is `python -m explorer sweep FAMILY` (spectra of every update,
projection energies of every variant, MSO of the paper's pairs), each run in a fresh EXPLORER_CACHE_DIR into which
only the checkpoints' fingerprint memo is copied, so that no run pays for hashing 2.5 GB of checkpoints.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import DEMO, RESULTS, ROOT, save

SVD_SHAPES = [(1024, 1024), (2048, 2048), (4096, 4096), (4096, 1024), (8192, 1024), (8192, 2048)]


def machine_load() -> dict:
    """What else ran: the load average and the busiest other processes, so that a reader can judge the numbers."""
    top = subprocess.run(["ps", "-eo", "pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    busy = [" ".join(line.split()[:2] + [" ".join(line.split()[2:])[:90]]) for line in top.splitlines()[1:7]]
    return {"load_average": [round(x, 2) for x in os.getloadavg()], "busiest_processes": busy}


def svd_times() -> dict:
    times = {}
    generator = torch.Generator().manual_seed(0)
    for rows, cols in SVD_SHAPES:
        matrix = torch.randn(rows, cols, generator=generator)
        torch.linalg.svd(matrix[:64, :64], full_matrices=False)  # loads LAPACK once
        start = time.perf_counter()
        torch.linalg.svd(matrix, full_matrices=False)  # what left_svd runs: U and the singular values
        seconds = time.perf_counter() - start
        times[f"{rows}x{cols}"] = {"seconds": round(seconds, 3),
                                   "ns_per_m_n2": round(1e9 * seconds / (max(rows, cols) * min(rows, cols) ** 2), 3)}
        print(rows, cols, times[f"{rows}x{cols}"], file=sys.stderr)
    return {"svd_float32": times, "torch_threads": torch.get_num_threads(), "svd_load": machine_load()}


def sweep(family: Path, memo: Path, ray: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as cache:
        shutil.copy(memo, Path(cache) / "fingerprints.json")
        env = {**os.environ, "EXPLORER_CACHE_DIR": cache}
        env.pop("EXPLORER_RAY", None)
        command = [sys.executable, "-m", "explorer", "sweep", str(family)] + (["--ray", "local"] if ray else [])
        load = machine_load()
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(proc.stderr)
        summary = [line for line in proc.stderr.splitlines() if line.startswith("ray:")]
        return {"seconds": round(seconds, 1), "ray_summary": summary[-1] if summary else None, "load_before": load}


def demo_speedup(family: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ray-memo-") as warm:
        env = {**os.environ, "EXPLORER_CACHE_DIR": warm}
        code = "import sys; from explorer.checkpoints.family import load_family; load_family(sys.argv[1]).fingerprints()"
        subprocess.run([sys.executable, "-c", code, str(family)], cwd=ROOT, env=env, check=True)  # and warms the page cache
        memo = Path(warm) / "fingerprints.json"
        runs = {"plain": [], "ray": []}
        for ray in (False, True, False, True):  # interleaved, so that a change in the machine's load hits both
            runs["ray" if ray else "plain"].append(sweep(family, memo, ray))
            print(runs, file=sys.stderr)
    best = {mode: min(run["seconds"] for run in mode_runs) for mode, mode_runs in runs.items()}
    return {"demo_weight_pass": {"family": str(family), "command": "python -m explorer sweep FAMILY [--ray local]",
                                 "ray_workers": 2, "runs": runs, "best_s": best,
                                 "speedup": round(best["plain"] / best["ray"], 2)}}


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else "svd"
    previous = RESULTS / "ray.json"
    results = json.loads(previous.read_text()) if previous.exists() else {}
    results.pop("date", None), results.pop("machine", None)
    if part == "svd":
        results.update(svd_times())
    else:
        results.update(demo_speedup(Path(sys.argv[2]) if len(sys.argv) > 2 else DEMO))
    save("ray", results)


if __name__ == "__main__":
    main()
