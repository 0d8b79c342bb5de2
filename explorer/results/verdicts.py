"""A finding's claim, its three-way verdict and how its interval reads: shared by findings.py and defences.py."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

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
    6: ("A subspace defence (Safe LoRA) separates safety from utility no better than a random subspace",
        "The study concludes that subspace-based defences face fundamental limits (it does not test Safe LoRA "
        "itself). If so, Safe LoRA, which projects a fine-tune's update through an alignment matrix, regains no more "
        "refusal per unit of utility lost than projecting away a random subspace does.",
        "Projection lab"),
}


SUPPORTS, REFUTES, INCONCLUSIVE, UNMEASURED = "supports", "does not support", "inconclusive", "not measurable"


@dataclass
class Finding:
    number: int
    measured: str
    verdict: str
    data: pd.DataFrame
    statistic: float | None = None
    ci: tuple[float, float] | None = None
    threshold: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        return CLAIMS[self.number][0]

    @property
    def paper(self) -> str:
        return CLAIMS[self.number][1]

    @property
    def page(self) -> str:
        return CLAIMS[self.number][2]

    @property
    def supported(self) -> bool | None:
        """True or False for a clear verdict; None when inconclusive or not measurable."""
        return {SUPPORTS: True, REFUTES: False}.get(self.verdict)

    def as_json(self) -> dict:
        return {"number": self.number, "title": self.title, "verdict": self.verdict, "statistic": self.statistic,
                "ci": list(self.ci) if self.ci else None, "threshold": self.threshold, "text": self.measured}


def judge(statistic: float, ci: tuple[float, float] | None, threshold: float, supports_below: bool) -> str:
    """Three-way verdict: the claim holds on one side of the threshold; an interval straddling it is inconclusive."""
    low, high = ci if ci else (statistic, statistic)
    if supports_below:
        return SUPPORTS if high <= threshold else REFUTES if low > threshold else INCONCLUSIVE
    return SUPPORTS if low > threshold else REFUTES if high <= threshold else INCONCLUSIVE


def interval_text(ci: tuple[float, float] | None, fmt: str = "{:.2f}") -> str:
    """The interval in words; without one (no per-prompt outcomes stored) a sampled statistic is inconclusive."""
    if ci:
        return f" (95% CI {fmt.format(ci[0])} to {fmt.format(ci[1])})"
    return " (no interval: these results keep no per-prompt outcomes, so the verdict is inconclusive)"


def paper_side(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of the paper's projection side (bundles made before sides existed hold only one side)."""
    return frame[frame["side"] == "left"] if "side" in frame else frame
