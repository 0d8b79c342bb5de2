"""The study's five findings, each measured on a family's precomputed results and judged against the paper.

Thresholds (stated in every finding's text so a reader can disagree with them):
1. energy is "roughly linear" in rho when a straight line explains >= 90% of its variance, and subspaces keep
   "nearly the same" energy when their curves differ by <= 10 points everywhere;
2. top-k parallel projection "amplifies" when, averaged over rho <= 0.5, it keeps more utility AND more harm
   (lower refusal) than the random subspace;
3. orthogonal projection is "no more selective" when, per point of utility lost, it removes no more than
   1.25x the refusal gain of the random subspace;
4, 5. overlap is "well above" the random baseline when MSO >= 2x the baseline (eta = 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.activations.mso import headline as activation_headline
from explorer.results.bundle import Bundle

ETA = 0.5


CLAIMS = {
    1: ("Energy kept grows with ρ about equally in every subspace",
        "Energy kept grows roughly linearly with ρ; top-k, random-k and random subspaces keep nearly the same energy.",
        "Projection lab"),
    2: ("Keeping only the top alignment directions (method same) amplifies utility and harm",
        "Projecting onto the top-k alignment subspace amplifies utility AND harmfulness more than random subspaces: "
        "the top directions are potent, not safety-specific.", "Projection lab"),
    3: ("Removing the top alignment directions (method orth) removes utility and harm together",
        "Orthogonal projection of a contaminated fine-tune removes utility and harm together: per unit of utility "
        "lost it removes no more harm than a random subspace.", "Projection lab"),
    4: ("Useful and harmful updates overlap", "Useful and harmful updates overlap (MSO) well above the random "
        "baseline.", "Update overlap"),
    5: ("Useful and harmful prompts overlap in activation space", "Useful and harmful prompts overlap in activation "
        "space well above the random baseline.", "Activation space"),
}


@dataclass
class Finding:
    number: int
    measured: str
    supported: bool | None  # None: not measurable on this family
    data: pd.DataFrame

    @property
    def title(self) -> str:
        return CLAIMS[self.number][0]

    @property
    def paper(self) -> str:
        return CLAIMS[self.number][1]

    @property
    def page(self) -> str:
        return CLAIMS[self.number][2]


def _r_squared(x: np.ndarray, y: np.ndarray) -> float:
    slope, intercept = np.polyfit(x, y, 1)
    residual = ((y - (slope * x + intercept)) ** 2).sum()
    total = ((y - y.mean()) ** 2).sum()
    return float(1 - residual / total) if total > 0 else 1.0


def energy_linearity(bundle: Bundle) -> Finding:
    curves = bundle.table("energy_curves")
    curves = curves[curves["method"] == "same"]
    by_variant = []
    for variant, group in curves.groupby("variant"):
        wide = group.pivot(index="frac", columns="subspace", values="energy_kept_ratio")
        spread = float((wide.max(1) - wide.min(1)).max())
        by_variant.append((variant, _r_squared(wide.index.to_numpy(), wide["alignment"].to_numpy()), spread))
    worst_r2 = min(r for _, r, _ in by_variant)
    worst_spread = max(s for _, _, s in by_variant)
    supported = worst_r2 >= 0.9 and worst_spread <= 0.10
    measured = (f"Across {len(by_variant)} task updates, a straight line explains at least {worst_r2:.0%} of the "
                f"energy-vs-ρ curve (threshold 90%), and the alignment, random-k and random subspaces differ by at "
                f"most {100 * worst_spread:.0f} points of task energy at any ρ (threshold 10 points).")
    return Finding(1, measured, supported, curves)


def _grid(bundle: Bundle) -> pd.DataFrame:
    return bundle.table("projection")


def parallel_amplifies(bundle: Bundle) -> Finding:
    grid = _grid(bundle)
    same = grid[(grid["method"] == "same") & (grid["frac"] <= 0.5)]
    means = same.groupby(["variant", "subspace"])[["utility_accuracy", "refusal_rate"]].mean().reset_index()
    variant = "contaminated" if "contaminated" in set(means["variant"]) else means["variant"].iloc[0]
    rows = means[means["variant"] == variant].set_index("subspace")
    if not {"alignment", "random"} <= set(rows.index):
        return Finding(2, "Not measurable: the grid lacks the alignment or random subspace.", None, means)
    d_util = rows.loc["alignment", "utility_accuracy"] - rows.loc["random", "utility_accuracy"]
    d_harm = rows.loc["random", "refusal_rate"] - rows.loc["alignment", "refusal_rate"]
    supported = bool(d_util > 0 and d_harm > 0)
    measured = (f"On the {variant} fine-tune, keeping only the top-k alignment directions (ρ ≤ 0.5, averaged) gives "
                f"{100 * d_util:+.0f} points of word-problem accuracy and {-100 * d_harm:+.0f} points of refusal "
                f"compared with a random subspace of "
                f"the same size. The paper's claim needs both more utility and less refusal.")
    return Finding(2, measured, supported, means)


def orthogonal_not_selective(bundle: Bundle) -> Finding:
    grid = _grid(bundle)
    variant = "contaminated" if "contaminated" in set(grid["variant"]) else grid["variant"].iloc[0]
    orth = grid[(grid["method"] == "orth") & (grid["variant"] == variant)]
    unprojected = bundle.scores.get(variant, {})
    ratios = {}
    for subspace, group in orth.groupby("subspace"):
        lost = unprojected.get("utility_accuracy", np.nan) - group["utility_accuracy"]
        gained = group["refusal_rate"] - unprojected.get("refusal_rate", np.nan)
        ratios[subspace] = float(gained.sum() / lost.sum()) if lost.sum() > 0 else float("nan")
    table = pd.DataFrame([{"subspace": s, "refusal_gained_per_utility_lost": r} for s, r in ratios.items()])
    top, rand = ratios.get("alignment", np.nan), ratios.get("random", np.nan)
    if not np.isfinite(top) or not np.isfinite(rand):
        measured = (f"Not measurable on the {variant} fine-tune: orthogonal projection cost no utility in one of "
                    "the subspaces, so refusal gained per utility lost is undefined.")
        return Finding(3, measured, None, table)
    supported = top <= 1.25 * rand
    measured = (f"On the {variant} fine-tune, removing the top-k alignment directions regains {top:.2f} points of "
                f"refusal per point of utility lost; a random subspace regains {rand:.2f}. The paper's claim holds "
                f"if the alignment subspace is no more than 1.25x as selective.")
    return Finding(3, measured, supported, table)


def update_overlap(bundle: Bundle) -> Finding:
    mso = bundle.table("update_mso")
    pair = mso[(mso["a"] == "useful") & (mso["b"] == "harmful") & (mso["cols"] > 1)]
    if pair.empty:
        return Finding(4, "Not measurable: the family has no (useful, harmful) pair.", None, pair)
    at_eta = pair[np.isclose(pair["energy_frac"], ETA)]
    value, baseline = float(at_eta["mso"].mean()), float(at_eta["mso_random"].mean())
    supported = value >= 2 * baseline
    measured = (f"At η = {ETA}, the useful and harmful task updates have a mean MSO of {value:.3f} over all weight "
                f"matrices, {value / baseline:.1f}x the random baseline of {baseline:.3f} (threshold 2x).")
    curve = pair.groupby("energy_frac", as_index=False)[["mso", "mso_random"]].mean().assign(pair="useful · harmful")
    return Finding(4, measured, supported, curve)


def activation_overlap(bundle: Bundle) -> Finding:
    if not bundle.has("activation_mso"):
        return Finding(5, "Not measured: this family's results have no activation analysis.", None, pd.DataFrame())
    table = bundle.table("activation_mso")
    pair = table[(table["a"] == "useful") & (table["b"] == "harmful")]
    band = activation_headline(pair)
    at_eta = band[np.isclose(band["energy_frac"], ETA)]
    value, baseline = float(at_eta["mso"].mean()), float(at_eta["mso_random"].mean())
    supported = value >= 2 * baseline
    members = ", ".join(f"{r.member} {r.mso:.2f}" for r in at_eta.itertuples())
    measured = (f"At η = {ETA}, averaged over layers at 65-90% depth, useful and harmful prompts overlap with MSO "
                f"{value:.3f} on average over members ({members}); the random baseline is {baseline:.3f} "
                f"({value / baseline:.1f}x, threshold 2x).")
    curve = pair[np.isclose(pair["energy_frac"], ETA)]
    return Finding(5, measured, supported, curve)


def findings(bundle: Bundle) -> list[Finding]:
    return [energy_linearity(bundle), parallel_amplifies(bundle), orthogonal_not_selective(bundle),
            update_overlap(bundle), activation_overlap(bundle)]
