"""The five findings judge synthetic results the way their stated thresholds say."""
import pandas as pd

from explorer.results.bundle import Bundle, write_bundle
from explorer.results.findings import findings
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
                                "mso": 0.05 * act_ratio, "mso_random": 0.05}
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
    assert _verdicts(_bundle("paper-like")) == [True, True, True, True, True, None]  # 6: no Safe LoRA points


def test_contrary_results_are_reported_as_contrary():
    contrary = _bundle("contrary", top_energy_boost=0.3, top_utility=0.2, top_refusal=0.8, mso_ratio=1.2,
                       act_ratio=1.0)
    verdicts = _verdicts(contrary)
    assert verdicts[0] is False and verdicts[1] is False and verdicts[3] is False and verdicts[4] is False
    texts = [f.measured for f in findings(contrary)]
    assert "1.2x the random baseline" in texts[3]


def test_html_report_has_every_finding_and_its_chart():
    page = render(_bundle("report"))
    assert page.count("<h2>") == 7 and page.count("vegaEmbed(") >= 5
    assert "does not support the paper" not in page
