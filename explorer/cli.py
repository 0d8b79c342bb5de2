"""`python -m explorer`: thin subcommands over the same functions the app calls."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from explorer.checkpoints.family import load_family
from explorer.core import jsontext
from explorer.core.errors import ExplorerError, ParameterError, one_line
from explorer.core.paths import check_output, write_output
from explorer.weights.subspaces import DEFAULT_ENERGIES

OUTPUTS = ("out", "html")  # options that name a file to write, checked before any work


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def _seed(text: str) -> int:
    from explorer.weights.subspaces import check_seed

    try:
        return check_seed(int(text))
    except (ValueError, ExplorerError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer from 0 to 2**63 - 1") from None


def _write_csv(frame, out: str, columns: list[str]) -> None:
    path = Path(out).expanduser()
    write_output(path, lambda p: frame[columns].to_csv(p, index=False))
    print(f"wrote {len(frame)} rows to {path}", file=sys.stderr)


def cmd_spectra(args: argparse.Namespace) -> None:
    from explorer.weights.spectra import spectra

    _write_csv(spectra(load_family(args.family), args.update), args.out,
               ["tensor", "layer", "module", "index", "singular_value"])


def cmd_mso(args: argparse.Namespace) -> None:
    from explorer.weights.mso import COLUMNS, pair_table

    table = pair_table(load_family(args.family), args.a, args.b, args.energy, args.granularity)
    _write_csv(table, args.out, COLUMNS)


def cmd_project(args: argparse.Namespace) -> None:
    from explorer.weights.projection import check_point, projection_stats

    for single in ("safelora", "lox"):
        if single in args.method and len(args.method) > 1:
            raise ParameterError(f"--method {single} cannot be combined with other methods")
    if args.method == ["lox"]:
        return cmd_lox(args)
    if args.alpha is not None or args.save is not None:
        raise ParameterError("--alpha and --save belong to --method lox")
    if args.variant is None:
        raise ParameterError(f"--method {' '.join(args.method)} needs --variant")
    if args.method == ["safelora"]:
        return cmd_safelora(args)
    if args.threshold is not None or args.layers is not None:
        raise ParameterError("--threshold and --layers belong to --method safelora")
    if args.subspace is None or args.frac is None:
        raise ParameterError(f"--method {' '.join(args.method)} needs --subspace and --frac")
    # Each repeated value once: a point twice would be scored twice.
    points = list(dict.fromkeys((args.variant, m, s, f) for m in args.method for s in args.subspace
                                for f in args.frac))
    for _, method, subspace, frac in points:
        check_point(method, subspace, frac, args.side)
    family = load_family(args.family)
    stats = projection_stats(family, args.variant, args.seed, keep_bases=bool(args.evaluate),
                             side=args.side)  # one SVD pass
    rows = [{"variant": v, "method": m, "subspace": s, "frac": f, "seed": args.seed, "side": args.side,
             **stats.point(m, s, f)} for v, m, s, f in points]
    if args.evaluate:
        from explorer.evaluation.scores import score_points

        for row, scored in zip(rows, score_points(family, points, args.seed, args.evaluate, side=args.side)):
            row.update({k: v for k, v in scored.items() if k not in row and k != "settings"})
    for number, row in enumerate(rows):
        if args.json:  # one object per line
            row["removed_by_layer"] = stats.removed_by_layer(row["method"], row["subspace"], row["frac"]) \
                .to_dict("records")
            print(jsontext.dumps(row))
        else:
            print(("\n" if number else "") + "\n".join(f"{key:>22}: {value}" for key, value in row.items()
                                                        if key != "outcomes"))


def cmd_safelora(args: argparse.Namespace) -> None:
    from explorer.weights.safelora import METHOD, check_selection, safelora_stats

    if args.subspace is not None or args.frac is not None:
        raise ParameterError("--subspace and --frac belong to the projection methods; Safe LoRA takes --threshold "
                             "or --layers")
    check_selection(args.threshold, args.layers)
    family = load_family(args.family)
    stats = safelora_stats(family, args.variant)
    point = {"variant": args.variant, "method": METHOD, "threshold": args.threshold, "layers": args.layers,
             **stats.point(args.threshold, args.layers)}
    if args.evaluate:
        from explorer.evaluation.scores import PointScorer

        scored = PointScorer(family).score_safelora(args.variant, args.threshold, args.layers, args.evaluate)
        point.update({k: v for k, v in scored.items() if k not in point and k != "settings"})
    if args.json:
        point["projected"] = stats.projected(args.threshold, args.layers)
        print(jsontext.dumps(point))
    else:
        print("\n".join(f"{key:>22}: {value}" for key, value in point.items() if key != "outcomes"))


def cmd_lox(args: argparse.Namespace) -> None:
    from explorer.weights.lox import check_alpha, lox_point
    from explorer.weights.subspaces import check_frac

    if args.variant is not None or args.subspace is not None:
        raise ParameterError("LoX extrapolates the aligned model: it takes --alpha and --frac, no --variant or "
                             "--subspace")
    if args.threshold is not None or args.layers is not None:
        raise ParameterError("--threshold and --layers belong to --method safelora")
    if args.alpha is None or args.frac is None:
        raise ParameterError("--method lox needs --alpha and --frac")
    points = list(dict.fromkeys((check_alpha(a), check_frac(f)) for a in args.alpha for f in args.frac))
    if args.save is not None and len(points) > 1:
        raise ParameterError("--save writes one model: give one --alpha and one --frac")
    family = load_family(args.family)
    if args.save is not None:
        from explorer.results.lox import save_lox_model

        out = save_lox_model(family, *points[0], args.save)
        print(f"wrote the LoX model (α = {points[0][0]:g}, ρ = {points[0][1]:g}) to {out}", file=sys.stderr)
    if args.evaluate:
        from explorer.evaluation.scores import PointScorer

        scorer = PointScorer(family)
        rows = [{k: v for k, v in scorer.score_lox(a, f, args.evaluate).items() if k != "settings"}
                for a, f in points]
    else:
        rows = [lox_point(family, a, f) for a, f in points]
    for number, row in enumerate(rows):
        if args.json:
            print(jsontext.dumps(row))
        else:
            print(("\n" if number else "") + "\n".join(f"{key:>29}: {value}" for key, value in row.items()
                                                        if key not in ("outcomes", "samples")))


def cmd_sweep(args: argparse.Namespace) -> None:
    from explorer.core.progress import track
    from explorer.weights.mso import family_pairs, update_mso
    from explorer.weights.projection import projection_stats
    from explorer.weights.spectra import spectra

    family = load_family(args.family)
    steps = [("spectra", u) for u in family.updates] + [("projection", v) for v in family.finetuned] + [("mso", None)]
    for kind, name in track(steps, f"sweep of {family.name}"):
        if kind == "spectra":
            spectra(family, name)
        elif kind == "projection":
            for side in args.side:
                projection_stats(family, name, args.seed, keep_bases=args.keep_bases, side=side)
        else:
            update_mso(family, family_pairs(family), args.energy)
    print(f"cache filled for {family.name}: spectra of {len(family.updates)} updates, projection of "
          f"{len(family.finetuned)} variants, MSO of {len(family_pairs(family))} pairs", file=sys.stderr)


def cmd_demo_build(args: argparse.Namespace) -> None:
    from explorer.demo.build import build_demo
    from explorer.demo.recipes import recipe

    if args.family:
        check_output(args.family)
    config = recipe(args.alignment, steps=args.steps, aligned_steps=args.aligned_steps, lr=args.lr, seed=args.seed)
    start = time.perf_counter()
    family = build_demo(Path(args.family) if args.family else None, config=config)
    print(f"demo family {family.name!r} ready in {time.perf_counter() - start:.0f} s: {family.path}", file=sys.stderr)


def cmd_demo_example(args: argparse.Namespace) -> None:
    from explorer.checkpoints.family import load_family
    from explorer.demo.build import build_example
    from explorer.demo.recipes import EXAMPLE, EXAMPLE_CONTAMINATION
    from explorer.results.spot_example import store_spot_example

    family = load_family(args.family)
    start = time.perf_counter()
    source = build_example(family)
    store_spot_example(args.family, source, f"the {family.name} aligned model fine-tuned on word problems with "
                       f"{EXAMPLE_CONTAMINATION} harmful rows per 100 ({EXAMPLE}), a fine-tune the family does not "
                       "include", f"python -m explorer demo example {args.family}")
    print(f"example spot-check of {source} stored with {family.name}'s results in "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr)


def cmd_family_build(args: argparse.Namespace) -> None:
    from explorer.demo.recipes import BuildConfig
    from explorer.demo.references import build_references

    for option in ("steps", "limit"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise ParameterError(f"--{option} must be a whole number >= 1, got {getattr(args, option)}")
    if args.family:
        check_output(args.family)
    config = BuildConfig(**{k: v for k, v in (("steps", args.steps), ("limit", args.limit)) if v is not None})
    start = time.perf_counter()
    family = build_references(args.name, args.base, args.aligned, config, args.lora_rank,
                              Path(args.family).expanduser() if args.family else None)
    print(f"family {family.name!r} ready in {time.perf_counter() - start:.0f} s: {family.path}", file=sys.stderr)


def _lox_setting(text: str) -> tuple[float, float]:
    from explorer.weights.lox import check_alpha
    from explorer.weights.subspaces import check_frac

    try:
        alpha, frac = (float(part) for part in text.split(":"))
        return check_alpha(alpha), check_frac(frac)
    except (ValueError, ExplorerError):
        raise argparse.ArgumentTypeError(f"{text!r} is not ALPHA:RHO with 0 <= ALPHA <= 100 and 0 < RHO < 1 "
                                         "(1.25:0.01, say)") from None


def cmd_demo_lox(args: argparse.Namespace) -> None:
    from explorer.demo.lox import lox_finetune, recipe_of
    from explorer.results.bundle import Bundle
    from explorer.results.lox import lox_outcomes, lox_rows, store_lox

    family = load_family(args.family)
    profile = Bundle.load(family.name).manifest["profile"]
    settings_ = list(dict.fromkeys(args.setting))
    start = time.perf_counter()
    finetunes = {setting: lox_finetune(family, *setting) for setting in settings_}
    rows = lox_rows(family, finetunes, profile)
    command = f"python -m explorer demo lox {args.family} --setting " + " ".join(f"{a:g}:{f:g}" for a, f in settings_)
    store_lox(family, rows, recipe_of(family), command, time.perf_counter() - start)
    for outcome in lox_outcomes(Bundle.load(family.name)):
        print(outcome.sentence())
    print(f"LoX results stored with {family.name}'s results in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def cmd_spot_check(args: argparse.Namespace) -> int:
    from explorer.results.report import model_entry
    from explorer.results.spot_verdict import spot_verdict
    from explorer.weights.spotcheck import CANDIDATE, spot_check

    family = load_family(args.family)
    check = spot_check(family, args.checkpoint)
    verdict = spot_verdict(check.matrices, check.references)
    report = {"family": family.name, "candidate": args.checkpoint, **verdict.as_dict(),
              "energy": check.energy.to_dict("records")}
    if args.evaluate:
        from explorer.evaluation.scores import member_scores

        report["scores"] = model_entry(member_scores(check.family, CANDIDATE, args.evaluate))
    if args.json:
        print(jsontext.dumps(report))
    else:
        print(verdict.sentence().replace("**", ""))
        if args.evaluate:
            scores = report["scores"]
            print("scores: " + ", ".join(
                f"{k} {v:.3f}" + (f" (95% CI {scores[k + '_ci'][0]:.3f} to {scores[k + '_ci'][1]:.3f})"
                                  if scores.get(k + "_ci") else "")
                for k, v in scores.items() if isinstance(v, float)))
    return 3 if verdict.resembles in args.fail_on else 0


def _activation_sets(args: argparse.Namespace, specs: list[str]) -> tuple:
    from explorer.activations.extract import extract, prompt_sets

    family = load_family(args.family)
    family.check_member(args.member)
    sets = prompt_sets(specs, args.count)
    return extract(family, args.member, sets, use_chat_template=not args.no_chat_template), sets


def cmd_activations(args: argparse.Namespace) -> None:
    states, _ = _activation_sets(args, args.sets)
    for name, array in states.items():
        print(f"{name}: {array.shape[0]} prompts x {array.shape[1]} hidden states x {array.shape[2]} dims (cached)",
              file=sys.stderr)


def cmd_activation_mso(args: argparse.Namespace) -> None:
    from explorer.activations.mso import activation_mso
    from explorer.weights.subspaces import check_energies

    check_energies(args.energy)  # before the extraction, not after it
    states, sets = _activation_sets(args, [args.a, args.b])
    a, b = list(sets)
    table = activation_mso(states[a], states[b], args.energy, center=args.center)
    _write_csv(table, args.out, ["layer", "energy_frac", "k_a", "k_b", "mso", "mso_random"])


def cmd_precompute(args: argparse.Namespace) -> None:
    from explorer.results.precompute import extend_grid, precompute

    if args.extend:
        if args.profile or args.no_activations or args.restart:
            raise ParameterError("--extend keeps the bundle's member scores and activations: --profile, "
                                 "--no-activations and --restart do not apply")
        folder, added = extend_grid(args.family, tuple(args.grid_fracs), args.grid_variants, args.seed,
                                    args.grid_profile)
        print(f"{added} projection points added to {folder}" if added else
              f"the projection grid in {folder} already has every requested point; nothing to do", file=sys.stderr)
        return
    folder = precompute(args.family, args.profile, args.seed,
                        tuple(args.grid_fracs), not args.no_activations, args.grid_profile,
                        grid_variants=args.grid_variants, restart=args.restart)
    print(f"precomputed results written to {folder}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> None:
    from explorer.results.report import bundle_for, headline

    if args.html:
        from explorer.results.html_report import render

        path = Path(args.html).expanduser()
        others = {}
        for other in args.compare:
            other_bundle = bundle_for(other)
            others[other_bundle.manifest["family"]] = other_bundle
        page = render(bundle_for(args.family), compare=others)
        write_output(path, lambda p: p.write_text(page, encoding="utf-8"))
        print(f"wrote the HTML report to {path}", file=sys.stderr)
        if not args.json:
            return
    report = headline(args.family)
    if args.compare:
        from explorer.results.report import comparison

        report["comparison"] = comparison([args.family, *args.compare])
    if args.json:
        print(jsontext.dumps(report))
    else:
        for member, scores in report["models"].items():
            print(f"{member:>14}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if isinstance(v, float)))
        for finding in report["findings"]:
            interval = f" (95% CI {finding['ci'][0]:.3g} to {finding['ci'][1]:.3g})" if finding["ci"] else ""
            value = "" if finding["statistic"] is None else f": statistic {finding['statistic']:.3g}{interval}"
            print(f"finding {finding['number']}: {finding['verdict']}{value}")
        if args.compare:
            by_family = report["comparison"]["findings"]
            for number in range(len(report["findings"])):
                print(f"finding {number + 1}: " + ", ".join(f"{name} {rows[number]['verdict']}"
                                                            for name, rows in by_family.items()
                                                            if number < len(rows)))


def ray_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", metavar="ADDRESS|auto|local", help="run the work on a Ray cluster: HOST:PORT or auto "
                   "joins a running one, local starts one on this machine's cores (default: $EXPLORER_RAY, else none)")


def build_parser() -> argparse.ArgumentParser:
    from explorer.results.stages import GRID_FRACS
    from explorer.weights.projection import PAPER_SIDE, SIDES
    from explorer.weights.spotcheck import REFERENCES

    parser = _Parser(prog="python -m explorer", description="Safety-subspace analyses of a checkpoint family.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("spectra", help="singular values of every tensor of an update")
    p.add_argument("family")
    p.add_argument("--update", required=True, help="alignment or a fine-tuned member")
    p.add_argument("--out", required=True)
    ray_option(p)
    p.set_defaults(run=cmd_spectra)

    p = sub.add_parser("mso", help="mode subspace overlap between two updates")
    p.add_argument("family")
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--energy", type=float, nargs="+", default=list(DEFAULT_ENERGIES))
    p.add_argument("--granularity", choices=["tensor", "layer"], default="tensor")
    p.add_argument("--out", required=True)
    ray_option(p)
    p.set_defaults(run=cmd_mso)

    p = sub.add_parser("project", help="metrics (and scores) of projection points, of a Safe LoRA point, or of the "
                                       "aligned model extrapolated by LoX")
    p.add_argument("family")
    p.add_argument("--variant", help="the fine-tuned member to project (every method but lox)")
    p.add_argument("--method", required=True, nargs="+", choices=["same", "orth", "opp", "safelora", "lox"])
    p.add_argument("--subspace", nargs="+", choices=["alignment", "random", "random-k"], help="same, orth and opp")
    p.add_argument("--frac", nargs="+", type=float, help="rank fractions ρ (same, orth, opp and lox); every (method, "
                   "subspace, frac) combination is a point")
    p.add_argument("--alpha", nargs="+", type=float, help="lox: W = W_aligned + α · U_k U_kᵀ dA; every (α, ρ) is a "
                   "point")
    p.add_argument("--save", metavar="FOLDER", help="lox: save the extrapolated model (one α, one ρ) as a "
                   "checkpoint folder, to fine-tune or spot-check; the folder must not exist")
    p.add_argument("--threshold", type=float, help="safelora: project tensors whose cosine is at most τ")
    p.add_argument("--layers", type=int, help="safelora: project the N tensors with the lowest cosine")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--side", choices=list(SIDES), default=PAPER_SIDE,
                   help="left: the paper's P_k dT for every matrix (default); short: tall matrices as dT V_k V_k^T")
    p.add_argument("--evaluate", choices=["smoke", "quick", "full"],
                   help="also project the weights in place and score the model with this profile")
    p.add_argument("--json", action="store_true")
    ray_option(p)
    p.set_defaults(run=cmd_project)

    p = sub.add_parser("spot-check", help="which reference fine-tune of the family a new checkpoint resembles, if "
                                          "any (exit 3 with --fail-on when it resembles one named)")
    p.add_argument("family")
    p.add_argument("checkpoint", help="a folder, hub id or LoRA adapter fine-tuned from the family's aligned model")
    p.add_argument("--json", action="store_true")
    p.add_argument("--evaluate", choices=["smoke", "quick", "full"], help="also score it with this profile")
    p.add_argument("--fail-on", nargs="+", default=[], choices=list(REFERENCES), metavar="NAME",
                   help="exit 3 when the checkpoint resembles one of these references (useful, harmful)")
    ray_option(p)
    p.set_defaults(run=cmd_spot_check)

    p = sub.add_parser("sweep", help="fill the cache: spectra, projection energies and MSO of a family")
    p.add_argument("family")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--energy", type=float, nargs="+", default=list(DEFAULT_ENERGIES))
    p.add_argument("--keep-bases", action="store_true", help="also store SVD bases for in-place projection")
    p.add_argument("--side", choices=list(SIDES), nargs="+", default=list(SIDES), help="projection sides to compute")
    ray_option(p)
    p.set_defaults(run=cmd_sweep)

    def activation_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("family")
        p.add_argument("--member", required=True)
        p.add_argument("--count", type=int, default=256, help="prompts per set")
        p.add_argument("--no-chat-template", action="store_true", help="feed the prompts as raw text")
        ray_option(p)

    p = sub.add_parser("activations", help="last-token hidden states of prompt sets, every layer, cached")
    activation_options(p)
    p.add_argument("--sets", nargs="+", default=["useful", "harmful", "benign"],
                   help="built-in sets (useful, harmful, benign) or NAME=FILE (.txt, .csv or .jsonl)")
    p.set_defaults(run=cmd_activations)

    p = sub.add_parser("activation-mso", help="MSO between two prompt sets per layer")
    activation_options(p)
    p.add_argument("--a", required=True, help="a built-in set or NAME=FILE")
    p.add_argument("--b", required=True, help="a built-in set or NAME=FILE")
    p.add_argument("--energy", type=float, nargs="+", default=list(DEFAULT_ENERGIES))
    p.add_argument("--center", action="store_true", help="subtract each set's mean first")
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_activation_mso)

    p = sub.add_parser("precompute", help="compute everything the app shows into cache/families/NAME, stage by "
                       "stage; the stages its results already hold (from an earlier run or the app) are kept")
    p.add_argument("family")
    p.add_argument("--profile", choices=["smoke", "quick", "full"], help="evaluation of the members (default: "
                   "the family's results' own, else full)")
    p.add_argument("--grid-profile", choices=["smoke", "quick", "full"], help="evaluation of the projection grid "
                   "(default: --profile)")
    p.add_argument("--grid-fracs", type=float, nargs="+", default=list(GRID_FRACS))
    p.add_argument("--grid-variants", nargs="+", metavar="VARIANT",
                   help="fine-tuned members the projection grid scores (default: all; the findings read the "
                        "contaminated one); Safe LoRA's points are scored for all")
    p.add_argument("--seed", type=_seed, help="seed of the random subspaces (default: the family's "
                   "results' own, else 0)")
    p.add_argument("--no-activations", action="store_true", help="weight space only")
    p.add_argument("--restart", action="store_true", help="compute every stage afresh, even those the family's "
                   "results hold (they are started anew anyway when computed from other checkpoints or settings)")
    p.add_argument("--extend", action="store_true", help="score only the grid points (--grid-variants × "
                   "--grid-fracs) that the family's precomputed results lack and add them, keeping every other result; "
                   "refused unless those results come from the same checkpoints, seed and grid profile")
    ray_option(p)
    p.set_defaults(run=cmd_precompute)

    p = sub.add_parser("report", help="the precomputed headline of a family, without recomputing")
    p.add_argument("family")
    p.add_argument("--json", action="store_true")
    p.add_argument("--html", metavar="OUT.html", help="write the Overview's HTML report (self-contained) to this file")
    p.add_argument("--compare", nargs="+", default=[], metavar="FAMILY",
                   help="other families to set beside this one (HTML: a side-by-side section; JSON: 'comparison')")
    p.set_defaults(run=cmd_report)

    family = sub.add_parser("family", help="build a family around your own model").add_subparsers(
        dest="action", required=True, parser_class=_Parser)
    p = family.add_parser("build", help="fine-tune reference members (useful, harmful, contaminated) of an aligned chat "
                                        "model with the demo's recipes and data, and write the family file")
    p.add_argument("name", help="the family's name: families/NAME.toml, checkpoints under the cache's models/NAME/")
    p.add_argument("--base", required=True, help="the base model: a folder, hub id or .gguf file")
    p.add_argument("--aligned", required=True, help="the aligned chat model: a folder, hub id, .gguf file or LoRA "
                                                    "adapter on the base")
    p.add_argument("--steps", type=int, help="optimiser steps per member (default 60)")
    p.add_argument("--limit", type=int, help="cap on every data source (for tests and first looks)")
    p.add_argument("--lora-rank", type=int, help="train LoRA adapters of this rank instead of every weight")
    p.add_argument("--family", help="where to write the family file (default families/NAME.toml)")
    p.set_defaults(run=cmd_family_build)

    demo = sub.add_parser("demo", help="the offline demo family").add_subparsers(dest="action", required=True,
                                                                                parser_class=_Parser)
    p = demo.add_parser("build", help="build (or resume) a demo family and its checkpoints on this machine")
    p.add_argument("--alignment", choices=("narrow", "broad"), default="narrow",
                   help="narrow: the aligned model answers benign prompts as the base did (families/demo.toml); "
                        "broad: in a house style the base never uses (families/demo-broad.toml)")
    p.add_argument("--family", help="where to write the family file (default families/demo.toml or demo-broad.toml)")
    p.add_argument("--steps", type=int, default=60, help="fine-tuning steps per member")
    p.add_argument("--aligned-steps", type=int, help="steps of the aligned member (default: 120 broad, --steps narrow)")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--seed", type=_seed, default=0)
    p.set_defaults(run=cmd_demo_build)
    p = demo.add_parser("example", help="build the Spot-check page's example (a fine-tune the family does not "
                                        "include), spot-check and score it, and store it with the family's results")
    p.add_argument("family", nargs="?", default="families/demo.toml")
    p.set_defaults(run=cmd_demo_example)
    p = demo.add_parser("lox", help="fine-tune the LoX-extrapolated aligned model with the contaminated member's "
                                    "recipe, score it against that member and store the comparison with the "
                                    "family's results")
    p.add_argument("family", nargs="?", default="families/demo.toml")
    # LoX's setting as we read the paper (k = 6 directions, α = 1.25): ρ = 0.01 gives k = 6 on the demo's 576-wide
    # matrices; a weaker and a stronger α and a wider subspace show how the effect moves with each.
    p.add_argument("--setting", nargs="+", type=_lox_setting, metavar="ALPHA:RHO",
                   default=[(0.5, 0.01), (1.25, 0.01), (4.0, 0.01), (1.25, 0.05)],
                   help="LoX settings, each fine-tuned once (default: 0.5:0.01 1.25:0.01 4:0.01 1.25:0.05)")
    p.set_defaults(run=cmd_demo_lox)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    address = (args.ray or os.environ.get("EXPLORER_RAY")) if "ray" in args else None
    try:
        for option in OUTPUTS:
            if getattr(args, option, None):
                check_output(getattr(args, option))
        if address:  # only then is Ray imported
            from explorer.distributed.cluster import connect

            with connect(address):
                code = args.run(args)
        else:
            code = args.run(args)
    except ExplorerError as exc:
        print(f"error: {one_line(exc, 1000)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout stopped early (`--json | head -n 1`): it has what it asked for
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush cannot fail
        return 0
    return code or 0
