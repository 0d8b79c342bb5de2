"""Do two CPUs fine-tune the same model to the same bits? A probe for the demo's rebuilt checkpoints.

The committed results can only be extended (`precompute --extend`) on rebuilt checkpoints with the committed
fingerprints, and a rebuild on another CPU type can come out different (docs/demo.md). This probe fine-tunes
SmolLM2's de-quantised base for a few steps on fixed rows, as `demo build` does, and records the fingerprint of
the weights, once with the CPU's own kernels and once with them pinned to AVX2 (ATen's kernels, MKL's conditional
numerical reproducibility and oneDNN), which any x86 CPU of the last decade can run. Each run adds this CPU's
entry to benchmarks/results/reproducibility.json; entries of other CPUs with equal fingerprints show which mode
reproduces across them.

    python benchmarks/bench_reproducibility.py      # about 2 minutes on 2 cores
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

from common import ROOT

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}
STEPS, ROWS = 4, 16
RESULTS = ROOT / "benchmarks" / "results" / "reproducibility.json"


def cpu_model() -> str:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def probe() -> dict:
    """Fine-tune and fingerprint in this process (the environment decides the kernels)."""
    import hashlib

    import torch

    from explorer.checkpoints.stores import load_gguf
    from explorer.demo.build import smollm2_gguf
    from explorer.demo.recipes import BuildConfig, training_data
    from explorer.demo.training import finetune

    model, tokenizer = load_gguf(smollm2_gguf(), "base")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    start = time.perf_counter()
    losses = finetune(model, tokenizer, training_data("useful", {"harmful": [], "benign": []}, BuildConfig(limit=ROWS)), STEPS, 2e-5)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return {"fingerprint": digest.hexdigest()[:20], "last_loss": losses[-1], "seconds":
            round(time.perf_counter() - start, 1), "capability": torch.backends.cpu.get_cpu_capability()}


def main() -> None:
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
        return
    entry = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "cpus": os.cpu_count(),
             "avx512": "avx512f" in open("/proc/cpuinfo").read()}
    for mode, extra in (("native", {}), ("pinned_avx2", PINNED)):
        out = subprocess.run([sys.executable, __file__, "--probe"], env={**os.environ, **extra}, cwd=ROOT,
                             capture_output=True, text=True, check=True)
        entry[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    runs = json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else []
    RESULTS.write_text(json.dumps({"steps": STEPS, "rows": ROWS, "pinned": PINNED, "runs": [*runs, entry]},
                                  indent=1) + "\n")
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
