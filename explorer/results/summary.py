"""A plain-language summary of what a family's findings show and where they depart from the paper."""
from __future__ import annotations

import pandas as pd

VERDICTS = ("supports", "does not support", "inconclusive", "not measurable")


def verdict_of(finding) -> str:
    """One of VERDICTS for a `findings.Finding` (a three-way `verdict` where findings carry one)."""
    verdict = getattr(finding, "verdict", None)
    if verdict in VERDICTS:
        return verdict
    return {True: "supports", False: "does not support"}.get(getattr(finding, "supported", None), "not measurable")


def _numbers(items: list) -> str:
    numbers = [str(f.number) for f in items]
    return numbers[0] if len(numbers) == 1 else ", ".join(numbers[:-1]) + " and " + numbers[-1]


def plain_summary(family: str, measured: list, profile_note: str) -> str:
    """Markdown: how many of the paper's findings this family supports, which it departs from, and how much
    weight the numbers can bear."""
    groups = {v: [f for f in measured if verdict_of(f) == v] for v in VERDICTS}
    agree, depart = groups["supports"], groups["does not support"]
    parts = [f"**What the {family} family shows.** Of the paper's {len(measured)} findings, it supports "
             f"{len(agree)}" + (f" (finding {_numbers(agree)})" if agree else "") + "."]
    if depart:
        titles = [f"finding {f.number} (*{f.title[0].lower() + f.title[1:]}*)" for f in depart]
        listed = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
        parts.append(f"It departs from the paper on {listed}. Each box below gives the number measured and the "
                     "threshold it was judged against.")
    if groups["inconclusive"]:
        parts.append(f"Finding {_numbers(groups['inconclusive'])}: inconclusive, because the 95% interval "
                     "straddles the threshold or these results keep no per-prompt outcomes to draw one from; "
                     "this family cannot decide it yet.")
    if groups["not measurable"]:
        parts.append(f"Finding {_numbers(groups['not measurable'])} cannot be measured on these results.")
    parts.append(f"Scores: {profile_note}. A departure can come from the family (model size, length of "
                 "fine-tuning) or from the few prompts a score rests on, as much as from the paper.")
    return " ".join(parts)


def profile_note(manifest: dict) -> str:
    """Which evaluation profile scored what, with its prompt counts (markdown)."""
    from explorer.evaluation.evaluate import PROFILES

    def counts(name: str) -> str:
        profile = PROFILES.get(name)
        if profile is None:
            return ""
        return f" ({profile.refusal_prompts} refusal prompts, {profile.utility_prompts} word problems)"

    members, grid = manifest["profile"], manifest.get("grid_profile") or manifest["profile"]
    if members == grid:
        return f"every score from the **{members}** profile{counts(members)}"
    return (f"members scored with the **{members}** profile{counts(members)}, the projection grid with the "
            f"**{grid}** profile{counts(grid)}")


SHORT_TITLES = {"refusal_rate": "Refusal", "utility_accuracy": "Accuracy", "over_refusal": "Over-refusal",
                "style_adoption": "House style", "target_logprob": "Log-prob"}


def score_cell(scores: dict, score: str) -> str:
    """A member's score as shown in tables: a rate in % with its 95% interval, a log-prob in nats per token."""
    from explorer.results.charts import score_interval

    value = scores.get(score)
    if value is None:
        return "–"
    if score == "target_logprob":
        return f"{value:.2f}"
    ci = score_interval(scores, score)
    return f"{value:.0%}" + (f" ({ci[0]:.0%}–{ci[1]:.0%})" if ci else "")


def member_table(scores: dict[str, dict]) -> pd.DataFrame:
    """Members as rows, their scores as formatted columns; a score no member has is left out."""
    present = [s for s in SHORT_TITLES if any(v.get(s) is not None for v in scores.values())]
    return pd.DataFrame({m: {SHORT_TITLES[s]: score_cell(v, s) for s in present} for m, v in scores.items()}).T
