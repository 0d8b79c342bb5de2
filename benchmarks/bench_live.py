"""Live points and the first paint, measured on the demo family (its checkpoints are needed: `make demo`).

- a step of the ρ control: Δk re-projection of one step of 0.01 against a full rewrite of the weights (the floor
  it replaces), both in place on the loaded aligned model;
- a streamed live point (quick profile): time to the first estimate of all four scores, to the complete point,
  a resumed point (left after its first round, then asked again) and a cached one;
- the token floor: the tokens a quick-profile point runs through the model (prompts and generated tokens),
  divided by the prefill rate measured in the same run;
- the Overview in headless Chromium on a freshly started server and on a second visit: time to the title, the
  plain summary and the six verdicts.

    python benchmarks/bench_live.py            # writes benchmarks/results/live.json
"""
from __future__ import annotations

import os
import shutil
import sys
import time

import torch
from common import DEMO, ROOT, save

from explorer.checkpoints.family import load_family
from explorer.core.cache import result_path
from explorer.evaluation.evaluate import QUICK
from explorer.evaluation.scores import PointScorer, point_key
from explorer.evaluation.stream import evaluate_stream

VARIANT, METHOD, SUBSPACE = "contaminated", "orth", "alignment"


def _forget(family, frac: float) -> None:
    key = point_key(family, VARIANT, METHOD, SUBSPACE, frac, 0, "quick")
    for suffix in (".json", ".partial.json"):
        result_path("scores", key, suffix).unlink(missing_ok=True)


def step_and_stream() -> dict:
    family = load_family(DEMO)
    scorer = PointScorer(family)
    scorer.project(VARIANT, METHOD, SUBSPACE, 0.30)  # bases (from precompute) and the model loaded
    start = time.perf_counter()
    scorer.project(VARIANT, METHOD, "random", 0.30)  # another setting: every tensor rewritten
    full = time.perf_counter() - start
    scorer.project(VARIANT, METHOD, SUBSPACE, 0.30)
    steps = []
    for frac in (0.31, 0.32, 0.31, 0.33):
        start = time.perf_counter()
        scorer.project(VARIANT, METHOD, SUBSPACE, frac)
        steps.append(time.perf_counter() - start)

    frac = 0.34
    _forget(family, frac)
    start = time.perf_counter()
    rounds = []
    for scores in scorer.score_stream(VARIANT, METHOD, SUBSPACE, frac, profile="quick"):
        rounds.append({"s": round(time.perf_counter() - start, 2), "prompts": scores.get("progress"),
                       **{k: scores[k] for k in ("refusal_rate", "utility_accuracy", "over_refusal")},
                       "refusal_ci": scores["refusal_rate_ci"]})
    complete = time.perf_counter() - start
    start = time.perf_counter()
    next(scorer.score_stream(VARIANT, METHOD, SUBSPACE, frac, profile="quick"))
    cached = time.perf_counter() - start

    _forget(family, 0.35)
    stream = scorer.score_stream(VARIANT, METHOD, SUBSPACE, 0.35, profile="quick")
    next(stream)
    stream.close()  # the control moved on after the first estimate
    scorer.project(VARIANT, METHOD, SUBSPACE, 0.36)
    start = time.perf_counter()
    for _ in scorer.score_stream(VARIANT, METHOD, SUBSPACE, 0.35, profile="quick"):
        pass
    resumed = time.perf_counter() - start
    return {"step_reprojection_s": [round(s, 3) for s in steps], "full_rewrite_s": round(full, 2),
            "first_estimate_s": rounds[0]["s"], "complete_point_s": round(complete, 2),
            "resumed_after_first_round_s": round(resumed, 2), "cached_point_s": round(cached, 3),
            "rounds": rounds, **token_floor(scorer)}


def token_floor(scorer: PointScorer) -> dict:
    """Tokens one quick-profile point processes, and the seconds they take at the measured prefill rate."""
    model, tokenizer = scorer._model, scorer._tokenizer
    outcomes, seconds = None, 0.0
    counted = {"prompt": 0, "generated": 0}
    from explorer.evaluation import generation as module

    original = module._generate_batch

    def counting(model_, tokenizer_, input_ids, mask, past, budgets, stops):
        texts = original(model_, tokenizer_, input_ids, mask, past, budgets, stops)
        counted["generated"] += sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        return texts

    module._generate_batch = counting
    try:
        start = time.perf_counter()
        for outcomes in evaluate_stream(model, tokenizer, QUICK):
            pass
        seconds = time.perf_counter() - start
    finally:
        module._generate_batch = original
    from explorer.checkpoints.models import chat_text
    from explorer.evaluation.prompts import advbench_split, benign_split, word_problems

    harmful = list(advbench_split("evaluation"))
    texts = [b.goal for b in harmful[:QUICK.logprob_prompts]] + \
        [p.question for p in word_problems("evaluation", QUICK.utility_prompts)] + \
        list(benign_split("evaluation")[:QUICK.benign_prompts])
    ids = [tokenizer(chat_text(tokenizer, t, True), add_special_tokens=False)["input_ids"] for t in texts]
    targets = sum(len(tokenizer(b.target, add_special_tokens=False)["input_ids"]) for b in
                  harmful[:QUICK.logprob_prompts])
    counted["prompt"] = sum(len(i) for i in ids) + targets
    batch = torch.tensor([ids[0][:48]] * 16)
    with torch.no_grad():
        model(input_ids=batch)
        start = time.perf_counter()
        for _ in range(3):
            model(input_ids=batch)
    rate = 3 * batch.numel() / (time.perf_counter() - start)
    floor = (counted["prompt"] + counted["generated"]) / rate
    return {"tokens_prompt": counted["prompt"], "tokens_generated": counted["generated"],
            "prefill_tokens_per_s": round(rate), "token_floor_s": round(floor, 1),
            "stream_evaluation_s": round(seconds, 1), "stream_over_floor": round(seconds / floor, 2),
            "prompt_count": len(texts), "completed": outcomes is not None and outcomes["progress"][0] ==
            outcomes["progress"][1]}


def overview_paint() -> dict:
    """Title, summary and verdicts of the Overview in headless Chromium: a fresh server's first visit, then a
    second one."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests" / "app"))
    from conftest import streamlit_server

    env = {k: v for k, v in os.environ.items() if k != "EXPLORER_CACHE_DIR"}
    times = {}
    with streamlit_server(env, ROOT / "benchmarks" / "results" / "streamlit.log.tmp") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        for visit in ("cold", "warm"):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(url)
            page.get_by_role("heading", name="Subspace Explorer").first.wait_for(timeout=120_000)
            title = time.perf_counter() - start
            page.get_by_text("What the demo family shows").first.wait_for(timeout=120_000)
            summary = time.perf_counter() - start
            page.wait_for_function("document.body.innerText.split(/Supports the paper\\.|Does not support the "
                                   "paper\\.|Inconclusive\\.|Not measurable here\\./).length - 1 >= 6",
                                   timeout=120_000)
            verdicts = time.perf_counter() - start
            times[visit] = {"title_s": round(title, 2), "summary_s": round(summary, 2),
                            "verdicts_s": round(verdicts, 2)}
            page.close()
        browser.close()
    bound = 2 * times["warm"]["verdicts_s"] + 2
    return {"overview": times, "overview_cold_bound_s": round(bound, 2),
            "overview_cold_within_bound": times["cold"]["verdicts_s"] <= bound}


def main() -> None:
    results = {"overview_paint": overview_paint()}
    results.update(step_and_stream())
    results["threads"] = torch.get_num_threads()
    results["load_average"] = os.getloadavg()
    save("live", results)


if __name__ == "__main__":
    if "--overview-only" in sys.argv:
        save("live-overview", overview_paint())
    else:
        main()
    (ROOT / "benchmarks" / "results" / "streamlit.log.tmp").unlink(missing_ok=True)
