"""The five findings judge synthetic results the way their stated thresholds say."""
import numpy as np
import pandas as pd
import pytest

from explorer.results.bundle import Bundle, write_bundle
from explorer.results.findings import INCONCLUSIVE, REFUTES, SUPPORTS, findings, judge
from explorer.results.html_report import render

FRACS = [0.1, 0.25, 0.5, 0.75]


def _bundle(name, top_energy_boost=0.0, top_utility=0.5, top_refusal=0.2, mso_ratio=3.0, act_ratio=3.0):
    curves = [{"variant": v, "method": "same", "subspace": s, "frac": f, "energy_kept_ratio":
               min(1.0, f + (top_energy_boost if s == "alignment" else 0.0)), "cosine_task_kept": 0.5, "k_total": 1}
              for v in ("useful", "contaminated") for s in ("alignment", "random", "random-k") for f in FRACS]
    grid = []
    for method in ("same", "orth"):
        for subspace in ("alignment", "random", "random-k"):
            for frac in FRACS:
                top = subspace == "alignment"
                utility = (top_utility if top else 0.3) if method == "same" else 0.5 - 0.4 * frac
                refusal = (top_refusal if top else 0.5) if method == "same" else 0.1 + 0.4 * frac
                grid.append({"variant": "contaminated", "method": method, "subspace": subspace, "frac": frac,
                             "utility_accuracy": utility, "refusal_rate": refusal})
    etas = [0.1, 0.5, 0.9]
    update_mso = pd.DataFrame([{"a": "useful", "b": "harmful", "group": f"t{i}", "cols": 8, "energy_frac": e,
                                "mso": 0.1 * mso_ratio, "mso_random": 0.1} for i in range(3) for e in etas])
    activation = pd.DataFrame([{"member": m, "a": "useful", "b": "harmful", "layer": layer, "energy_frac": e,
                                "mso": 0.05 * act_ratio, "mso_random": 0.05, "k_a": 3, "k_b": 2}
                               for m in ("base", "aligned") for layer in range(11) for e in etas])
    scores = {"contaminated": {"utility_accuracy": 0.5, "refusal_rate": 0.1, "over_refusal": 0.0,
                               "target_logprob": -0.2}}
    manifest = {"family": name, "created": "2026-11-24T00:00:00", "command": "test", "profile": "smoke"}
    write_bundle(name, manifest, scores, {"energy_curves": pd.DataFrame(curves), "projection": pd.DataFrame(grid),
                                          "update_mso": update_mso, "activation_mso": activation})
    return Bundle.load(name)


def _verdicts(bundle):
    return [f.supported for f in findings(bundle)]


def test_paper_like_results_support_every_finding():
    assert _verdicts(_outcome_bundle("paper-like", 400, 0.5, 0.2)) == [True, True, True, True, True, None]  # 6: no Safe LoRA points


def test_contrary_results_are_reported_as_contrary():
    contrary = _outcome_bundle("contrary", 400, 0.2, 0.8, top_energy_boost=0.3, mso_ratio=1.2, act_ratio=1.0)
    verdicts = _verdicts(contrary)
    assert verdicts[0] is False and verdicts[1] is False and verdicts[3] is False and verdicts[4] is False
    texts = [f.measured for f in findings(contrary)]
    assert "1.2x the random baseline" in texts[3]


def test_html_report_has_every_finding_and_its_chart():
    page = render(_bundle("report"))
    assert page.count("<h2>") == 7 and page.count("<svg") >= 5 and "<script src" not in page
    assert "does not support the paper" not in page


def _outcome_bundle(name, prompts, top_utility, top_refusal, seed=0, **options):
    """A grid with per-prompt outcomes on `prompts` prompts per point, paired by prompt, with the unprojected
    contaminated fine-tune on the same prompts."""
    rng = np.random.default_rng(seed)
    base = _bundle(name, top_utility=top_utility, top_refusal=top_refusal, **options)
    grid, outcomes = base.table("projection"), []
    reference = base.scores["contaminated"]
    for outcome, rate in (("utility", reference["utility_accuracy"]), ("refusal", reference["refusal_rate"])):
        outcomes += [{"variant": "contaminated", "method": "unprojected", "subspace": None, "frac": None,
                      "outcome": outcome, "prompt": i, "value": float(i < round(rate * prompts))}
                     for i in range(prompts)]
    for row in grid.itertuples():
        for outcome, rate in (("utility", row.utility_accuracy), ("refusal", row.refusal_rate)):
            values = (rng.random(prompts) < rate).astype(float)
            outcomes += [{"variant": row.variant, "method": row.method, "subspace": row.subspace, "frac": row.frac,
                          "outcome": outcome, "prompt": i, "value": v} for i, v in enumerate(values)]
    tables = {t: base.table(t) for t in ("energy_curves", "update_mso", "activation_mso")}
    frame = pd.DataFrame(outcomes)
    means = frame[frame["method"] != "unprojected"].groupby(
        ["variant", "method", "subspace", "frac", "outcome"])["value"].mean().unstack()
    grid = grid.set_index(["variant", "method", "subspace", "frac"])
    grid["utility_accuracy"], grid["refusal_rate"] = means["utility"], means["refusal"]
    write_bundle(name, base.manifest, base.scores, {**tables, "projection": grid.reset_index(),
                                                    "projection_outcomes": frame})
    return Bundle.load(name)


def test_without_per_prompt_outcomes_sampled_findings_are_inconclusive():
    verdicts = [f.verdict for f in findings(_bundle("no-outcomes"))]
    assert verdicts[1] == verdicts[2] == INCONCLUSIVE and verdicts[0] == verdicts[3] == SUPPORTS


def test_a_small_effect_on_few_prompts_is_inconclusive_and_a_large_one_on_many_is_not():
    few = findings(_outcome_bundle("few", prompts=8, top_utility=0.36, top_refusal=0.44))[1]
    many = findings(_outcome_bundle("many", prompts=400, top_utility=0.6, top_refusal=0.2))[1]
    assert few.verdict == INCONCLUSIVE and few.ci[0] < 0 < few.ci[1]
    assert many.verdict == SUPPORTS and many.ci[0] > 0 and "95% CI" in many.measured


@pytest.mark.parametrize("statistic,ci,below,verdict", [
    (1.0, (0.8, 1.2), True, SUPPORTS), (1.4, (1.3, 1.6), True, REFUTES), (1.2, (1.0, 1.5), True, INCONCLUSIVE),
    (0.1, (0.05, 0.2), False, SUPPORTS), (-0.1, (-0.2, -0.01), False, REFUTES), (0.1, None, False, SUPPORTS)])
def test_three_way_verdicts(statistic, ci, below, verdict):
    threshold = 1.25 if below else 0.0
    assert judge(statistic, ci, threshold, supports_below=below) == verdict
