"""The weight pass at a user's scale: a Llama-3.2-1B-shaped family built from its config, then 8B and 70B.

1. Builds base, aligned and useful members with Llama-3.2-1B's shapes (random weights, random full-rank
   updates, bfloat16 as the model ships) under /tmp, unless they are there already.
2. Runs `spectra` of the alignment update and `mso` of the pair (alignment, useful) as CLI commands on an empty
   cache, timing each and its peak RSS (`/usr/bin/time -f %M`); then the plain-SVD floor of that pair
   (`torch.linalg.svd`, thin, float32, of every matrix of both updates: one per distinct shape, times its count).
3. Times the solver's parts (float64 Gram, eigenvalues, eigenvectors) on one matrix of each distinct shape of
   the 1B and of Llama-3.1-8B. 8B's commands are estimated from its parts, 70B's from the 8B parts scaled by
   FLOPs (Gram: rows x cols^2; eigendecomposition: n^3); both times the 1B's ratio of measured to computed
   time, which carries over the reading, subtracting and writing.
4. Counts the disk that `--keep-bases` writes (alignment bases U and Q per family, coefficients C and D per
   variant, float32) for the three shapes, from their tensors' shapes.

    python benchmarks/bench_scale.py      # about 25 minutes on 2 cores; writes benchmarks/results/scale.json
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, save, timed
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig

from explorer.weights.subspaces import BLOCK

LLAMA = dict(num_attention_heads=32, num_key_value_heads=8, head_dim=64, rope_theta=500000.0,
             max_position_embeddings=131072, torch_dtype="bfloat16")
SHAPES = {
    "1B": LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      tie_word_embeddings=True, **LLAMA),
    "8B": LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      tie_word_embeddings=False, **{**LLAMA, "head_dim": 128}),
    "70B": LlamaConfig(vocab_size=128256, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                       tie_word_embeddings=False, **{**LLAMA, "num_attention_heads": 64, "head_dim": 128}),
}
FAMILY = Path(tempfile.gettempdir()) / "explorer-bench-1b"
SCALE, UPDATE = 0.02, 1e-3  # init scale of the weights; scale of each random full-rank update


def tensor_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    return shapes


def build(config: LlamaConfig) -> Path:
    """base, aligned = base + dA, useful = aligned + dT: every tensor random, every update full-rank."""
    family = FAMILY / "family.toml"
    if family.exists():
        return family
    shapes = tensor_shapes(config)
    gen = torch.Generator().manual_seed(0)
    members = {"base": {}, "aligned": {}, "useful": {}}
    for name, shape in shapes.items():
        base = torch.ones(shape) if len(shape) == 1 else SCALE * torch.randn(shape, generator=gen)
        aligned = base + UPDATE * torch.randn(shape, generator=gen)
        useful = aligned + UPDATE * torch.randn(shape, generator=gen)
        for member, value in zip(members, (base, aligned, useful)):
            members[member][name] = value.to(torch.bfloat16)
    for member, state in members.items():
        folder = FAMILY / member
        folder.mkdir(parents=True, exist_ok=True)
        save_file(state, folder / "model.safetensors")
        config.save_pretrained(folder)
    del members
    family.write_text('name = "llama-1b-shaped"\nbase = "base"\naligned = "aligned"\n\n'
                      '[finetuned]\nuseful = "useful"\n')
    return family


def run(args: list[str]) -> dict:
    """A CLI command on an empty cache: wall time and peak RSS."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "EXPLORER_CACHE_DIR": cache}
        out = subprocess.run(["/usr/bin/time", "-f", "%M %e", sys.executable, "-m", "explorer", *args],
                             env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(out.stderr)
    rss_kb, wall = out.stderr.strip().splitlines()[-1].split()
    return {"wall_s": float(wall), "peak_rss_mb": round(int(rss_kb) / 1024)}


def parts(rows: int, cols: int) -> dict[str, float]:
    """The solver's parts on one random matrix of this shape: its float64 Gram matrix (taken a block at a time,
    as the solver does), then the eigenvalues alone (spectra) and with the eigenvectors (MSO)."""
    matrix, wide, small = torch.randn(rows, cols), rows <= cols, min(rows, cols)
    gram = torch.zeros(small, small, dtype=torch.float64)
    start = time.perf_counter()
    for block in matrix.split(BLOCK, dim=1 if wide else 0):
        block = block.double()
        gram.addmm_(block, block.T) if wide else gram.addmm_(block.T, block)
    return {"gram_s": time.perf_counter() - start, "eigenvalues_s": timed(lambda: torch.linalg.eigvalsh(gram)),
            "eigenvectors_s": timed(lambda: torch.linalg.eigh(gram))}


def svd_floor_s(config: LlamaConfig) -> float:
    """The plain-SVD floor of one pair's MSO: `torch.linalg.svd` (thin, float32) of every matrix of two updates,
    timed once per distinct shape on a random matrix and multiplied by how many of that shape there are."""
    counts: dict[tuple[int, ...], int] = {}
    for shape in tensor_shapes(config).values():
        if len(shape) == 2:
            counts[shape] = counts.get(shape, 0) + 1
    return sum(2 * count * timed(lambda: torch.linalg.svd(torch.randn(shape), full_matrices=False))
               for shape, count in counts.items())


def layer_free(name: str) -> str:
    return re.sub(r"layers\.\d+\.", "layers.N.", name)


def compute_estimate(config: LlamaConfig, measured: dict[tuple[int, int], dict[str, float]],
                     measured_config: LlamaConfig) -> dict[str, float]:
    """Compute seconds of the spectra of one update (a Gram and its eigenvalues per tensor) and of the MSO of one
    pair (two Grams and eigendecompositions; a tall tensor adds the cross product A^T B, one more Gram), from the
    parts measured on `measured_config`'s shapes, scaled by FLOPs where the shapes differ (Gram: rows x cols^2;
    eigendecomposition: n^3)."""
    reference = {layer_free(k): s for k, s in tensor_shapes(measured_config).items()}
    spectra = mso = 0.0
    for name, shape in tensor_shapes(config).items():
        if len(shape) != 2:
            continue  # norms: negligible
        ref = reference[layer_free(name)]
        part = measured[ref]
        gram = part["gram_s"] * max(shape) * min(shape) ** 2 / (max(ref) * min(ref) ** 2)
        cube = (min(shape) / min(ref)) ** 3
        spectra += gram + part["eigenvalues_s"] * cube
        mso += 2 * (gram + part["eigenvectors_s"] * cube) + (gram if shape[0] > shape[1] else 0.0)
    return {"spectra_one_update_s": spectra, "mso_one_pair_s": mso}


def bases_disk_gb(config: LlamaConfig, variants: int = 3) -> dict[str, float]:
    """--keep-bases on the default (left) side: U and Q (rows x r) once, C and D (r x cols) per variant."""
    alignment = coefficients = 0
    for shape in tensor_shapes(config).values():
        rows, cols = shape if len(shape) == 2 else (shape[0], 1)
        rank = min(rows, cols)
        alignment += 2 * rows * rank * 4 + rank * 8
        coefficients += 2 * rank * cols * 4
    return {"alignment_bases_gb": round(alignment / 1e9, 1), "coefficients_per_variant_gb":
            round(coefficients / 1e9, 1), f"total_with_{variants}_variants_gb":
            round((alignment + variants * coefficients) / 1e9, 1)}


def checkpoint_gb(config: LlamaConfig) -> float:
    return round(sum(torch.Size(s).numel() for s in tensor_shapes(config).values()) * 2 / 1e9, 2)


def main() -> None:
    one_b = SHAPES["1B"]
    start = time.perf_counter()
    family = build(one_b)
    results = {"build_s": round(time.perf_counter() - start), "checkpoint_gb_bf16": {
        k: checkpoint_gb(c) for k, c in SHAPES.items()}}
    results["1B"] = {
        "spectra_alignment": run(["spectra", str(family), "--update", "alignment", "--out", "/tmp/bench-spectra.csv"]),
        "mso_alignment_useful": run(["mso", str(family), "--a", "alignment", "--b", "useful",
                                     "--out", "/tmp/bench-mso.csv"]),
    }
    results["1B"]["svd_floor_of_the_pair_s"] = round(svd_floor_s(one_b), 1)
    results["1B"]["mso_command_over_floor"] = round(
        results["1B"]["mso_alignment_useful"]["wall_s"] / results["1B"]["svd_floor_of_the_pair_s"], 3)
    measured = {}
    for size in ("1B", "8B"):
        shapes = {s for s in tensor_shapes(SHAPES[size]).values() if len(s) == 2}
        measured[size] = {s: parts(*s) for s in sorted(shapes)}
        results[f"{size}_parts_s"] = {f"{r}x{c}": {k: round(v, 2) for k, v in p.items()}
                                       for (r, c), p in measured[size].items()}
    # The commands also read the checkpoints, subtract and write: the 1B run's ratio of measured to computed
    # time carries that over to the larger shapes.
    computed = compute_estimate(one_b, measured["1B"], one_b)
    overhead = {"spectra_one_update_s": results["1B"]["spectra_alignment"]["wall_s"] / computed["spectra_one_update_s"],
                "mso_one_pair_s": results["1B"]["mso_alignment_useful"]["wall_s"] / computed["mso_one_pair_s"]}
    results["1B_measured_over_computed"] = {k: round(v, 2) for k, v in overhead.items()}
    for size in ("8B", "70B"):
        estimate = compute_estimate(SHAPES[size], measured["8B"], SHAPES["8B"])
        results[f"{size}_estimate"] = {k: round(v * overhead[k]) for k, v in estimate.items()}
    results["keep_bases_disk"] = {k: bases_disk_gb(c) for k, c in SHAPES.items()}
    save("scale", results)


if __name__ == "__main__":
    main()
