"""A prepared, unattended check on one GPU: the engine on a Llama-3.2-1B-shaped family in at most 8 minutes.

Builds the family on the machine from its config (random weights, random full-rank updates, bfloat16; the
vocabulary is the given tokenizer's, so that the model can be evaluated), then times, on the GPU:
1. the weight pass: spectra of the alignment update, MSO of (alignment, useful) and the projection energies of
   `useful` with its bases kept;
2. a live projection point with the quick profile (projection written in place, then the scores);
3. the activations of one member (128 prompts);
4. a spot-check of a candidate fine-tune.
Every step is timed with its peak GPU memory; a failing step is recorded and the next one runs. The results are
written after each step, so a run cut short keeps what it measured.

    python benchmarks/gpu_check.py --tokenizer DIR              # on the GPU machine: benchmarks/results/gpu.json
    python benchmarks/gpu_check.py --tokenizer DIR --shape tiny --device cpu --out X.json   # a dry run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHAPES = {
    "1B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, head_dim=64, tie_word_embeddings=True),
    "tiny": dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8, tie_word_embeddings=True),
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
MEMBERS = ("base", "aligned", "useful", "harmful", "candidate")
SCALE, UPDATE = 0.02, 2e-3


def build(root: Path, shape: str, tokenizer_dir: Path, device: str) -> Path:
    """base; aligned = base + dA; useful, harmful = aligned + their own update; candidate = aligned + 0.8 of
    useful's update + a little of its own (the spot-check should find it resembles useful)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    config = LlamaConfig(vocab_size=vocab, max_position_embeddings=8192, rope_theta=500000.0,
                         torch_dtype="bfloat16", **SHAPES[shape])
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(config).state_dict().items()
                  if k != "lm_head.weight"}
    gen = torch.Generator(device).manual_seed(0)
    states = {m: {} for m in MEMBERS}
    for name, size in shapes.items():
        def noise(scale: float) -> torch.Tensor:
            return scale * torch.randn(size, generator=gen, device=device)
        base = torch.ones(size, device=device) if len(size) == 1 else noise(SCALE)
        aligned = base + noise(UPDATE)
        useful_update = noise(UPDATE)
        values = (base, aligned, aligned + useful_update, aligned + noise(UPDATE),
                  aligned + 0.8 * useful_update + noise(0.3 * UPDATE))
        for member, value in zip(MEMBERS, values):
            states[member][name] = value.to(torch.bfloat16).cpu()
    for member, state in states.items():
        folder = root / member
        folder.mkdir(parents=True, exist_ok=True)
        save_file(state, folder / "model.safetensors")
        config.save_pretrained(folder)
        for file in TOKENIZER_FILES:
            if (tokenizer_dir / file).exists():
                shutil.copy(tokenizer_dir / file, folder / file)
    family = root / "family.toml"
    family.write_text(f'name = "gpu-check-{shape.lower()}"\nbase = "base"\naligned = "aligned"\n\n'
                      '[finetuned]\nuseful = "useful"\nharmful = "harmful"\n')
    return family


class Recorder:
    def __init__(self, out: Path, device: str):
        self.out = out
        self.results = {"date": date.today().isoformat(), "machine": platform.node(), "torch": torch.__version__,
                        "device": torch.cuda.get_device_name() if device.startswith("cuda") else device,
                        "steps": {}}
        self.device = device

    def step(self, name: str, work) -> object:
        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        entry: dict = {}
        value = None
        try:
            value = work()
            if cuda:
                torch.cuda.synchronize()
            entry["seconds"] = round(time.perf_counter() - start, 2)
            if isinstance(value, dict):
                entry.update(value)
        except Exception as exc:  # one failing step must not cost the others: the run cannot be repeated
            entry = {"seconds": round(time.perf_counter() - start, 2), "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc(limit=6)}
        if cuda:
            entry["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        self.results["steps"][name] = entry
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=1))
        print(name, json.dumps({k: v for k, v in entry.items() if k != "traceback"}), flush=True)
        return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True, help="a folder with tokenizer.json and its config")
    parser.add_argument("--shape", choices=list(SHAPES), default="1B")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for a dry run", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    os.environ["EXPLORER_DEVICE"] = args.device
    os.environ["EXPLORER_CACHE_DIR"] = str(work / "cache")
    from explorer.activations.extract import builtin_prompts, extract
    from explorer.checkpoints.family import load_family
    from explorer.evaluation.scores import PointScorer
    from explorer.results.spot_verdict import spot_verdict
    from explorer.weights.mso import update_mso
    from explorer.weights.projection import projection_stats
    from explorer.weights.spectra import spectra
    from explorer.weights.spotcheck import spot_check

    record = Recorder(args.out, args.device)
    record.results["shape"] = args.shape
    path = record.step("build_family", lambda: {"path": str(build(work / "family", args.shape, args.tokenizer,
                                                                     args.device))})
    family = load_family(work / "family" / "family.toml")
    family.fingerprints()
    def mso() -> dict:
        table = update_mso(family, [("alignment", "useful")], [0.5])[("alignment", "useful")]
        return {"mean_mso_at_0.5": round(float(table["mso"].mean()), 4)}

    def projection() -> dict:
        stats = projection_stats(family, "useful", keep_bases=True)
        return {"energy_kept_orth_rho_0.3": round(stats.point("orth", "alignment", 0.3)["energy_kept_ratio"], 4)}

    def live_point() -> dict:
        scores = PointScorer(family).score("useful", "orth", "alignment", 0.3, profile="quick")
        return {k: scores[k] for k in ("refusal_rate", "utility_accuracy", "over_refusal")}

    def activations() -> dict:
        sets = {"harmful": builtin_prompts("harmful", 64), "useful": builtin_prompts("useful", 64)}
        return {"shape": list(extract(family, "aligned", sets)["harmful"].shape)}

    def spot() -> dict:
        check = spot_check(family, str(work / "family" / "candidate"))
        return {"verdict": spot_verdict(check.matrices, check.references).sentence()}

    record.step("spectra_alignment", lambda: {"tensors": int(spectra(family, "alignment")["tensor"].nunique())})
    record.step("mso_alignment_useful", mso)
    record.step("projection_energies_useful_keep_bases", projection)
    record.step("live_point_quick", live_point)
    record.step("activations_aligned_128_prompts", activations)
    record.step("spot_check_candidate", spot)
    record.results["total_seconds"] = round(sum(s["seconds"] for s in record.results["steps"].values()), 1)
    args.out.write_text(json.dumps(record.results, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    failed = [name for name, step in record.results["steps"].items() if "error" in step]
    print(f"total {record.results['total_seconds']} s; failed steps: {', '.join(failed) or 'none'}")
    return 1 if failed or path is None else 0


if __name__ == "__main__":
    sys.exit(main())
