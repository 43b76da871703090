"""The frontier study: which runs it makes, and its report (table, Pareto reading, plot) from per-run JSON."""

from __future__ import annotations

import json
from collections import Counter

from scripts.frontier import FRONTIER_OBJECTIVES, FRONTIER_WEIGHTS, frontier_rows
from scripts.frontier_report import pareto, write_frontier_report


def test_frontier_has_four_weights_per_objective_two_K_for_the_multisample_ones_tied_and_untied():
    runs = frontier_rows()
    keys = [r["key"] for r in runs]
    assert len(keys) == len(set(keys)) == 2 * (2 * 4 + 2 * 2 * 4)
    per = Counter((r["objective"], r["tied"], r["objective_kwargs"].get("num_samples")) for r in runs)
    for obj in FRONTIER_OBJECTIVES:
        for tied in (True, False):
            ks = (2, 5) if obj in ("rws", "vimco") else (None,)
            assert all(per[(obj, tied, k)] == len(FRONTIER_WEIGHTS) for k in ks)
    rws = [r for r in runs if r["objective"] == "rws"]
    assert all(r["objective_kwargs"]["q_weight"] == r["objective_kwargs"]["generation_weight"] for r in rws)
    assert runs[0]["tied"] and not runs[-1]["tied"]  # tied first: an interrupted study has them
    assert len(frontier_rows(quick=True)) == 8


def run(objective, tied, w, acc, ll, fitted, sample_acc=0.5, K=None):
    kw = {"generation_weight": w, **({"num_samples": K} if K else {})}
    key = f"mnist-{objective}_frontier_w{w}-{'tied' if tied else 'untied'}-s0"
    return {"key": key, "objective": objective, "tied": tied, "variant": f"frontier_w{w}", "epochs": 5,
            "test_acc": acc, "log_likelihood": ll, "log_likelihood_fitted": fitted, "log_likelihood_K": 100,
            "sample_acc": sample_acc, "sample_acc_means": 0.9, "diversity": 0.8, "seconds_per_epoch": 2.0,
            "recipe": {"objective_kwargs": kw, "test_images": 2000}, "command": f"cmd {key}", "device": "cpu"}


def test_report_reads_the_pareto_fronts_and_the_best_tied_point(tmp_path):
    runs = [run("symmetric", True, 1.0, 0.983, -300.0, -150.0), run("rws", True, 0.1, 0.981, -110.0, -105.0, K=5),
            run("rws", True, 1.0, 0.90, -100.0, -98.0, K=5), run("symmetric", False, 1.0, 0.982, -400.0, -160.0),
            run("rws", False, 1.0, 0.85, -101.0, -97.0, K=5), run("wake_sleep", False, 0.1, 0.80, -130, -120.0)]
    (tmp_path / "runs").mkdir()
    for r in runs:
        (tmp_path / "runs" / f"{r['key']}.json").write_text(json.dumps(r))
    write_frontier_report(tmp_path, expected=[r["key"] for r in runs] + ["mnist-vimco-missing"])
    md = (tmp_path / "FRONTIER.md").read_text()
    assert [r["key"] for r in pareto([r for r in runs if not r["tied"]])] == [runs[3]["key"], runs[4]["key"]]
    assert "| rws | yes | 0.1 | 5 | 98.10 | -110.00 | -105.00 | 5.00 | 50.0 | 90.0 |" in md
    assert "Best tied point with test accuracy ≥ 98%: rws w = 0.1, K = 5 (tied), 98.10%, -105.0 nats" in md
    # untied front: symmetric (98.2%, -160) is beaten by tied rws w=0.1; rws untied (-97) by no tied run
    assert "Tying: 1 of the 2 untied front points are matched or beaten" in md
    assert "1 of the 7 runs have no results yet: mnist-vimco-missing." in md
    assert (tmp_path / "frontier.png").stat().st_size > 1000
    assert len(json.loads((tmp_path / "frontier.json").read_text())) == 6
