"""The frontier study (`make reproduce FRONTIER=1`, `python -m scripts.reproduce --frontier`): accuracy against
likelihood on MNIST for tied and untied pairs, every generative objective at four generative weights. Its rows run
like the matrix's (scripts/study.py), into reports/frontier/; scripts/frontier_report.py writes the reading."""

from __future__ import annotations

import time

from scripts.frontier_report import write_frontier_report
from scripts.study import FULL, QUICK, ROOT, _row, run_row, train_reference, write_json

# The frontier study (MNIST): accuracy against likelihood for tied and untied pairs, every generative objective
# at four generative weights w (rws and vimco at two K). w scales all of an objective's generative terms
# against -log q(y|x): symmetric's -log p(x|y); wake_sleep's wake and sleep; rws's p- and q-terms; vimco's
# bound. A shorter budget than the matrix (48 runs of 4 epochs), and the likelihoods at K = 100 on 2,000 test
# images, the fitted one after 500 proposal steps from the pair's own recognition network; written to
# reports/frontier/ (`make reproduce FRONTIER=1`).
FRONTIER_OBJECTIVES = ("symmetric", "wake_sleep", "rws", "vimco")
FRONTIER_WEIGHTS = (0.03, 0.1, 0.3, 1.0)
FRONTIER_K = (2, 5)
FRONTIER = {**FULL, "epochs": 4, "eval_num_samples": 100, "test_images": 2000, "per_class": 1000,
            "marginal_images": 100, "mc_samples": 200, "fitted_steps": 500}
QUICK_FRONTIER = {**QUICK, "fitted_steps": 20}


def frontier_rows(quick: bool = False) -> list[dict]:
    """The frontier's runs, tied first; with ``quick`` one weight and one K each (a smoke run)."""
    weights, ks = (FRONTIER_WEIGHTS[-1:], FRONTIER_K[-1:]) if quick else (FRONTIER_WEIGHTS, FRONTIER_K)
    out = []
    for tied in (True, False):
        for objective in FRONTIER_OBJECTIVES:
            for K in ks if objective in ("rws", "vimco") else (None,):
                for w in weights:
                    kwargs = {"generation_weight": w}
                    if objective == "rws":
                        kwargs["q_weight"] = w
                    if K is not None:
                        kwargs["num_samples"] = K
                    variant = f"frontier_w{w:g}" + (f"_K{K}" if K is not None else "")
                    out.append(_row("mnist", objective, tied, 0, variant=variant, objective_kwargs=kwargs,
                                    change=f"generative weight {w:g}" + (f", K = {K}" if K else "")))
    return out


def run_frontier(args) -> None:
    out = args.out or (ROOT / "reports" / ("quick_frontier" if args.quick else "frontier"))
    args.runs_dir = args.ckpt_dir / "runs" / ("quick_frontier" if args.quick else "frontier")
    settings = QUICK_FRONTIER if args.quick else FRONTIER
    todo = [r for r in frontier_rows(args.quick) if not args.only or args.only in r["key"]]
    if not args.report_only:
        ref = train_reference(args, "mnist", QUICK if args.quick else FULL, out) if todo else None
        for row in todo:
            path = out / "runs" / f"{row['key']}.json"
            if path.exists():
                print(f"[frontier] {row['key']}: done, skipped")
                continue
            t0 = time.perf_counter()
            result = run_row(args, row, settings, ref, out)
            result["wall_seconds"] = time.perf_counter() - t0
            write_json(path, result)
            print(f"[frontier] {row['key']}: test_acc {result['test_acc']:.4f}, log_likelihood "
                  f"{result['log_likelihood']:.2f} (fitted {result['log_likelihood_fitted']:.2f}), "
                  f"{result['wall_seconds']:.0f} s", flush=True)
    write_frontier_report(out, expected=[r["key"] for r in frontier_rows(args.quick)])
