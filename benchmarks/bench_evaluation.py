"""Evaluation with and without its speed-ups (shared chat prefix, early stop) on the demo members: time per
full-profile evaluation, and whether any per-prompt outcome changes. Then a projection point's cost.

Usage: python benchmarks/bench_evaluation.py [MEMBER ...]   (default: every member of the demo family)
"""
import sys

import numpy as np
import torch
from common import DEMO, save, timed

from explorer.checkpoints.family import load_family
from explorer.checkpoints.models import load_model, load_tokenizer
from explorer.evaluation.evaluate import FULL, QUICK, evaluate
from explorer.weights.projection import apply_projection


def compare(model, tokenizer, profile) -> dict:
    runs = {}
    for speedups in (True, False):
        runs[speedups] = {}
        runs[speedups]["seconds"] = timed(lambda: runs[speedups].update(
            result=evaluate(model, tokenizer, profile, speedups=speedups)))
    fast, plain = runs[True]["result"]["outcomes"], runs[False]["result"]["outcomes"]
    return {
        "with_speedups_s": round(runs[True]["seconds"], 1),
        "without_s": round(runs[False]["seconds"], 1),
        "speedup": round(runs[False]["seconds"] / runs[True]["seconds"], 2),
        "changed_outcomes": {k: int(sum(a != b for a, b in zip(fast[k], plain[k])))
                             for k in ("refusal", "utility", "over_refusal")},
        "logprob_max_abs_diff": float(np.max(np.abs(np.subtract(fast["target_logprob"], plain["target_logprob"])))),
        "scores": {k: runs[True]["result"][k] for k in ("refusal_rate", "utility_accuracy", "over_refusal")},
    }


def main(members: list[str]) -> None:
    torch.manual_seed(0)
    family = load_family(DEMO)
    results = {"profile": FULL.name, "members": {}}
    for member in members or family.members:
        model, tokenizer = load_model(family, member), load_tokenizer(family, member)
        results["members"][member] = compare(model, tokenizer, FULL)
        print(member, results["members"][member], file=sys.stderr)
    model, tokenizer = load_model(family, "aligned"), load_tokenizer(family, "aligned")
    apply_projection(model, family, "contaminated", "orth", "alignment", 0.37)  # bases from precompute
    results["projection_in_place_s"] = round(timed(
        lambda: apply_projection(model, family, "contaminated", "orth", "random", 0.37)), 1)
    results["quick_point"] = compare(model, tokenizer, QUICK)
    save("evaluation", results)


if __name__ == "__main__":
    main(sys.argv[1:])
