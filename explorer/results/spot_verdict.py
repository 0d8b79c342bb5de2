"""Which of a family's reference fine-tunes a spot-checked candidate resembles, if any.

The candidate resembles a reference only when its overlap with it stands clear of two things:
- the random baseline: the mean MSO at η = 0.5 over the weight matrices is at least LIFT times that of random
  subspaces of the same ranks, at the lower end of its 95% interval (finding 4 uses the same 2x threshold);
- every other reference: the candidate overlaps this one more by at least MARGIN, at the lower end of the 95%
  interval of the paired difference (the same matrices).
Otherwise it resembles none of them: an update that overlaps two references alike, or none above chance (a random
update of the same norm), is no evidence of either. With a single reference there is nothing to stand clear of,
and no verdict: distinct fine-tunes of one model share directions far above chance (the demo's useful and harmful
updates, 4.2x), so overlap with one reference alone says little. The intervals are seeded bootstraps over
weight matrices.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from explorer.evaluation.stats import bootstrap_interval
from explorer.weights.spotcheck import ETA, REFERENCES

LIFT = 2.0
MARGIN = 0.02


@dataclass
class ReferenceOverlap:
    reference: str
    mso: float  # mean MSO over the weight matrices at eta
    baseline: float  # the same for random subspaces of the same ranks
    lift: float  # mso / baseline
    lift_ci: tuple[float, float] | None
    margin: float | None  # mso minus the highest of the other references' (None without another reference)
    margin_ci: tuple[float, float] | None
    clear_of_baseline: bool
    clear_of_others: bool


@dataclass
class SpotVerdict:
    resembles: str | None
    references: list[ReferenceOverlap]
    matrices: int

    def sentence(self) -> str:
        values = ", ".join(f"{r.reference} {r.mso:.3f} ({r.lift:.1f}x its random baseline of {r.baseline:.3f}"
                           f"{_interval(r.lift_ci, '.1f', 'x')})" for r in self.references)
        if self.resembles is None and len(self.references) < 2:
            return (f"No verdict: the family has {len(self.references) or 'no'} reference fine-tune"
                    f"{'' if len(self.references) == 1 else 's'} of {' and '.join(REFERENCES)}, and a verdict needs "
                    f"both, to tell which one the overlap stands clear of (`python -m explorer family build` fine-tunes "
                    f"both from the aligned model). Mean MSO at η = {ETA:g} over {self.matrices} weight matrices: "
                    f"{values or 'none'}.")
        if self.resembles is None:
            return (f"It resembles none of the references: no overlap stands clear of both the random baseline "
                    f"(≥ {LIFT:g}x) and the other references (≥ +{MARGIN:g}). Mean MSO at η = {ETA:g} over "
                    f"{self.matrices} weight matrices: {values}.")
        chosen = next(r for r in self.references if r.reference == self.resembles)
        return (f"It resembles the **{self.resembles}** fine-tune: its overlap stands clear of the random baseline "
                f"(≥ {LIFT:g}x) and of the other references (≥ +{MARGIN:g}; it leads by {chosen.margin:+.3f}"
                f"{_interval(chosen.margin_ci, '+.3f')}), at the 95% level. Mean MSO at "
                f"η = {ETA:g} over {self.matrices} weight matrices: {values}.")

    @classmethod
    def from_dict(cls, data: dict) -> "SpotVerdict":
        references = [ReferenceOverlap(**{**r, "lift_ci": _pair(r["lift_ci"]), "margin_ci": _pair(r["margin_ci"])})
                      for r in data["references"]]
        return cls(data["resembles"], references, data["matrices"])

    def as_dict(self) -> dict:
        return {"resembles": self.resembles, "eta": ETA, "matrices": self.matrices,
                "rule": {"lift_at_least": LIFT, "margin_at_least": MARGIN, "level": 0.95},
                "references": [asdict(r) for r in self.references]}


def _interval(ci: tuple[float, float] | None, spec: str, unit: str = "") -> str:
    return "" if ci is None else f", 95% CI {ci[0]:{spec}}{unit} to {ci[1]:{spec}}{unit}"


def _pair(values: list | None) -> tuple[float, float] | None:
    return None if values is None else (float(values[0]), float(values[1]))


def spot_verdict(matrices: pd.DataFrame, references: list[str]) -> SpotVerdict:
    """The verdict from per-matrix overlaps at eta (columns reference, group, mso, mso_random), on the matrices
    every reference overlaps (a reference that left a matrix unchanged has no subspace there)."""
    wide = matrices[matrices["reference"].isin(references)].pivot_table(
        index="group", columns="reference", values=["mso", "mso_random"]).dropna()
    present = [r for r in references if ("mso", r) in wide.columns]
    rows = []
    for reference in present:
        mso, baseline = wide[("mso", reference)].to_numpy(), wide[("mso_random", reference)].to_numpy()
        lift_ci = bootstrap_interval(lambda m, b: m / b if b > 0 else np.nan, [[mso, baseline]])
        others = [r for r in present if r != reference]
        margin = margin_ci = None
        if others:
            best = wide[[("mso", r) for r in others]].to_numpy().max(axis=1)
            margin = float(mso.mean() - best.mean())
            margin_ci = bootstrap_interval(lambda m, o: m - o, [[mso, best]])
        rows.append(ReferenceOverlap(
            reference, float(mso.mean()), float(baseline.mean()),
            float(mso.mean() / baseline.mean()) if baseline.mean() > 0 else float("nan"), lift_ci, margin, margin_ci,
            clear_of_baseline=lift_ci is not None and lift_ci[0] >= LIFT,
            clear_of_others=margin_ci is not None and margin_ci[0] >= MARGIN))
    clear = [r.reference for r in rows if r.clear_of_baseline and r.clear_of_others]
    return SpotVerdict(clear[0] if len(clear) == 1 else None, rows, len(wide))
