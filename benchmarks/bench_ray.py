"""The demo family's weight pass on a local Ray with 2 workers against the plain path, and float32 SVD times of
single matrices (the per-tensor cost that a 70B estimate scales up).

`python benchmarks/bench_ray.py svd` and `python benchmarks/bench_ray.py demo [FAMILY.toml [ROUNDS]]` each add their
keys to benchmarks/results/ray.json. The weight pass is `python -m explorer sweep FAMILY` (spectra of every update,
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


MODES = {  # name: (extra arguments, extra environment)
    "plain": ([], {}),
    # The Ray workers run one thread each (Ray sets OMP_NUM_THREADS); the plain path with one thread too shows how
    # much of a speed-up comes from that alone on a loaded machine.
    "plain_1_thread": ([], {"OMP_NUM_THREADS": "1"}),
    "ray": (["--ray", "local"], {}),
}


def sweep(family: Path, memo: Path, mode: str) -> dict:
    arguments, extra_env = MODES[mode]
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as cache:
        shutil.copy(memo, Path(cache) / "fingerprints.json")
        env = {**os.environ, "EXPLORER_CACHE_DIR": cache, **extra_env}
        env.pop("EXPLORER_RAY", None)
        load = machine_load()
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "explorer", "sweep", str(family), *arguments], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(proc.stderr)
        summary = [line for line in proc.stderr.splitlines() if line.startswith("ray:")]
        return {"seconds": round(seconds, 1), "ray_summary": summary[-1] if summary else None, "load_before": load}


def demo_speedup(family: Path, rounds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ray-memo-") as warm:
        env = {**os.environ, "EXPLORER_CACHE_DIR": warm}
        code = ("import sys; from explorer.checkpoints.family import load_family; "
                "load_family(sys.argv[1]).fingerprints()")
        # Hashing every checkpoint also brings them into the page cache, so that no mode pays for cold reads.
        subprocess.run([sys.executable, "-c", code, str(family)], cwd=ROOT, env=env, check=True)
        memo = Path(warm) / "fingerprints.json"
        runs = {mode: [] for mode in MODES}
        for _ in range(rounds):  # interleaved, so that a change in the machine's load hits every mode
            for mode in MODES:
                runs[mode].append(sweep(family, memo, mode))
                print(mode, runs[mode][-1]["seconds"], file=sys.stderr)
    best = {mode: min(run["seconds"] for run in mode_runs) for mode, mode_runs in runs.items()}
    return {"demo_weight_pass": {"family": str(family), "command": "python -m explorer sweep FAMILY [--ray local]",
                                 "ray_workers": 2, "runs": runs, "best_s": best,
                                 "speedup_over_plain": round(best["plain"] / best["ray"], 2),
                                 "speedup_over_plain_1_thread": round(best["plain_1_thread"] / best["ray"], 2)}}


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else "svd"
    previous = RESULTS / "ray.json"
    results = json.loads(previous.read_text()) if previous.exists() else {}
    results.pop("date", None), results.pop("machine", None)
    if part == "svd":
        results.update(svd_times())
    else:
        family = Path(sys.argv[2]) if len(sys.argv) > 2 else DEMO
        results.update(demo_speedup(family, int(sys.argv[3]) if len(sys.argv) > 3 else 2))
    save("ray", results)


if __name__ == "__main__":
    main()
