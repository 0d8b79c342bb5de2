"""The few responses an evaluation keeps ("samples"), stored as bundle rows and shown next to their prompts."""
from __future__ import annotations

import pandas as pd

from explorer.evaluation.prompts import advbench_split, benign_split, word_problems

KINDS = {"harmful": "Harmful request", "utility": "Word problem", "benign": "Benign instruction"}


def sample_prompts(kind: str, count: int) -> list[str]:
    """The first `count` evaluation prompts of a kind: the ones evaluate() keeps responses to."""
    if kind == "harmful":
        return [b.goal for b in advbench_split("evaluation")[:count]]
    if kind == "utility":
        return [p.question for p in word_problems("evaluation", max(count, 1))[:count]]
    if kind == "benign":
        return list(benign_split("evaluation")[:count])
    raise ValueError(f"unknown sample kind {kind!r}; kinds: {', '.join(KINDS)}")


def sample_rows(samples: dict[str, list[str]], **keys) -> list[dict]:
    """Tidy rows (the bundle's projection_samples table) of one evaluation's samples, tagged with `keys`."""
    return [{**keys, "kind": kind, "index": i, "response": response}
            for kind, responses in samples.items() for i, response in enumerate(responses)]


def samples_table(samples: dict[str, list[str]], reference: dict[str, list[str]] | None = None,
                  reference_name: str = "unprojected") -> pd.DataFrame:
    """Kind of prompt, prompt, response and, where given, the reference model's response to the same prompt;
    harmful requests first, then word problems, then benign instructions."""
    rows = []
    for kind in sorted(samples, key=lambda k: list(KINDS).index(k) if k in KINDS else len(KINDS)):
        responses = samples[kind]
        prompts = sample_prompts(kind, len(responses))
        theirs = (reference or {}).get(kind, [])
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            row = {"kind": KINDS.get(kind, kind), "prompt": prompt, "response here": response.strip()}
            if reference is not None:
                row[f"response, {reference_name}"] = theirs[i].strip() if i < len(theirs) else ""
            rows.append(row)
    return pd.DataFrame(rows)


def samples_from_rows(rows: pd.DataFrame) -> dict[str, list[str]]:
    """The inverse of sample_rows for one point's rows."""
    ordered = rows.sort_values(["kind", "index"])
    return {kind: list(group["response"]) for kind, group in ordered.groupby("kind", sort=False)}
