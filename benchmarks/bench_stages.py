"""The app's time estimates against the stages they estimate (issue 26), on the demo family, each stage run into an
empty cache as a background job runs it (`run_stage`), on an idle machine.

    python benchmarks/bench_stages.py          # writes benchmarks/results/stages.json (about 10 minutes on 2 cores)
"""
from __future__ import annotations

import time

from common import DEMO, fresh_cache, save

from explorer.checkpoints.family import load_family
from explorer.core.config import settings
from explorer.results.estimates import device_speed, stage_seconds
from explorer.results.stages import Settings, Stage, run_stage

STAGES = [Stage("spectra"), Stage("energy"), Stage("update_mso"), Stage("scores", "aligned"),
          Stage("grid", points=(("contaminated", "orth", "alignment", 0.3),)), Stage("activations", "aligned")]


def main() -> None:
    job = Settings("quick")
    rows = []
    with fresh_cache() as cache:
        # The demo's checkpoints under another name: the committed demo results would otherwise count as done.
        spec = DEMO.read_text().replace('name = "demo"', 'name = "bench-demo"').replace('"../', f'"{DEMO.parent.parent}/')
        (cache / "bench-demo.toml").write_text(spec)
        family = load_family(cache / "bench-demo.toml")
        device = settings().device
        speed = device_speed(device)
        for stage in STAGES:
            estimate = stage_seconds(family, stage, job, device)
            start = time.perf_counter()
            run_stage(family, stage, job, "bench_stages")
            measured = time.perf_counter() - start
            rows.append({"stage": stage.key, "estimate_s": round(estimate, 1), "measured_s": round(measured, 1),
                         "measured_over_estimate": round(measured / estimate, 2)})
            print(rows[-1], flush=True)
    save("stages", {"family": "demo", "profile": job.profile, "device": device,
                    "device_gflops": round(speed / 1e9, 1), "stages": rows})


if __name__ == "__main__":
    main()
