"""Two or more families side by side: each finding's statistic, interval and verdict, and how much of each task
update lies in the alignment update's subspace (weight MSO at η = 0.5). Findings that read the projection grid
are compared on the grid points every family scores."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorer.results.bundle import Bundle
from explorer.results.findings import ETA, Finding
from explorer.results.summary import verdict_of

GRID_TABLES = ("projection", "projection_outcomes", "removed_by_layer", "projection_samples")


@dataclass
class SharedGrid(Bundle):
    """A bundle whose projection grid is cut to the ρ values in `fracs` (the unprojected references stay)."""

    fracs: tuple[float, ...] = ()

    def table(self, table: str) -> pd.DataFrame:
        frame = super().table(table)
        if table in GRID_TABLES and "frac" in frame:
            frame = frame[frame["frac"].isna() | frame["frac"].round(6).isin(self.fracs)].reset_index(drop=True)
        return frame


def _grid_fracs(bundle: Bundle) -> tuple[float, ...]:
    return tuple(sorted({round(float(f), 6) for f in bundle.manifest.get("grid", {}).get("fracs", [])}))


def on_shared_grid(bundles: dict[str, Bundle]) -> tuple[dict[str, Bundle], tuple[float, ...] | None]:
    """The bundles cut to the ρ values all their grids score, and those values; the bundles as they are, and
    None, when every grid scores the same ρ values. Findings 2, 3 and 6 average over the grid's ρ values, so
    families with different grids are compared like for like only on the values they share. A bundle whose grid
    is already the shared one stays itself, so findings measured on it can be reused."""
    grids = {name: _grid_fracs(b) for name, b in bundles.items()}
    if len(set(grids.values())) <= 1:
        return bundles, None
    fracs = tuple(sorted(set.intersection(*(set(g) for g in grids.values()))))
    return {name: b if grids[name] == fracs else SharedGrid(b.folder, fracs) for name, b in bundles.items()}, fracs


def shared_grid_note(fracs: tuple[float, ...] | None) -> str:
    """What a side-by-side view says when the families' grids differ ("" when they do not)."""
    if fracs is None:
        return ""
    values = ", ".join(f"{f:g}" for f in fracs) or "none"
    return (f"The families' projection grids differ, so findings 2, 3 and 6 are measured here on the ρ values both "
            f"grids score ({values}); each family's own findings use its whole grid.")


# How each finding's statistic reads: (scale, format, unit); finding 1 and 2 are in points of a fraction.
STATISTIC_FORMATS = {1: (100, "{:.1f}", " points"), 2: (100, "{:+.1f}", " points"), 3: (1, "{:.2f}", "x"),
                     4: (1, "{:.1f}", "x"), 5: (1, "{:.1f}", "x"), 6: (1, "{:.2f}", "x")}


def statistic_text(finding: Finding) -> str:
    """The statistic with its 95% interval and threshold, in the finding's own unit ("–" when unmeasured)."""
    if finding.statistic is None or not math.isfinite(finding.statistic):
        return "–"
    scale, fmt, unit = STATISTIC_FORMATS[finding.number]
    text = fmt.format(finding.statistic * scale) + unit
    if finding.ci:
        text += f" (95% CI {fmt.format(finding.ci[0] * scale)} to {fmt.format(finding.ci[1] * scale)})"
    if finding.threshold is not None:
        text += f"; threshold {fmt.format(finding.threshold * scale).lstrip('+')}{unit}"
    return text


def finding_table(measured: dict[str, list[Finding]]) -> pd.DataFrame:
    """One row per finding, two columns per family (verdict, statistic with interval)."""
    rows: dict[int, dict] = {}
    for family, items in measured.items():
        for finding in items:
            row = rows.setdefault(finding.number, {"finding": f"{finding.number}. {finding.title}"})
            row[f"{family}: verdict"] = verdict_of(finding)
            row[f"{family}: statistic"] = statistic_text(finding)
    return pd.DataFrame(list(rows.values()))


def differing_findings(measured: dict[str, list[Finding]]) -> list[int]:
    """The numbers of the findings whose verdicts differ between the families."""
    verdicts: dict[int, set[str]] = {}
    for items in measured.values():
        for finding in items:
            verdicts.setdefault(finding.number, set()).add(verdict_of(finding))
    return sorted(n for n, v in verdicts.items() if len(v) > 1)


def largest_gap(frame: pd.DataFrame, value: str, keys: list[str]) -> float | None:
    """The largest difference in `value` between the families of a stacked frame (a `family` column) at the same
    `keys`; None where they share no point. Curves this close hide each other on a chart."""
    wide = frame.pivot_table(index=keys, columns="family", values=value).dropna()
    if wide.shape[1] < 2 or wide.empty:
        return None
    return float((wide.max(axis=1) - wide.min(axis=1)).max())


def alignment_overlap(bundle: Bundle, eta: float = ETA) -> pd.DataFrame:
    """MSO(task update, alignment update) and its random baseline at η, mean over weight matrices, per update."""
    mso = bundle.table("update_mso")
    at = mso[(mso["b"] == "alignment") & (mso["cols"] > 1) & np.isclose(mso["energy_frac"], eta)]
    return at.groupby("a", as_index=False, sort=False)[["mso", "mso_random"]].mean().rename(columns={"a": "update"})


def alignment_overlaps(bundles: dict[str, Bundle], eta: float = ETA) -> pd.DataFrame:
    return pd.concat([alignment_overlap(b, eta).assign(family=name) for name, b in bundles.items()],
                     ignore_index=True)


def overlap_contrast(overlaps: pd.DataFrame) -> dict[str, float]:
    """Per family, MSO(harmful, alignment) / MSO(useful, alignment): above 1, the alignment subspace holds more
    of the harmful update than of the useful one (it is safety-specific there); near 1, it is not."""
    contrast = {}
    for family, group in overlaps.groupby("family", sort=False):
        values = group.set_index("update")["mso"]
        if {"harmful", "useful"} <= set(values.index) and values["useful"] > 0:
            contrast[family] = float(values["harmful"] / values["useful"])
    return contrast


def comparison_summary(measured: dict[str, list[Finding]], overlaps: pd.DataFrame) -> str:
    """Markdown: where the families' verdicts differ, and how safety-specific each alignment subspace is."""
    names = list(measured)
    differ = differing_findings(measured)
    by_number = {name: {f.number: f for f in items} for name, items in measured.items()}
    if differ:
        parts = ["Verdicts differ on " + "; ".join(
            f"finding {n} (" + ", ".join(f"**{name}** {verdict_of(by_number[name][n])}" for name in names) + ")"
            for n in differ) + "."]
    else:
        parts = ["Every finding gets the same verdict on " + " and ".join(f"**{n}**" for n in names) + "."]
    contrast = overlap_contrast(overlaps)
    if contrast:
        parts.append("MSO(harmful, alignment) / MSO(useful, alignment) at η = 0.5: " + ", ".join(
            f"**{name}** {value:.2f}x" for name, value in contrast.items())
            + " (1x: the alignment subspace holds as much of the useful update as of the harmful one).")
    return " ".join(parts)
