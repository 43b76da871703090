"""The reproduction report is generated from the per-row JSON files: tables, reading and target checks."""

from __future__ import annotations

import json

from scripts.report import write_report


def row(objective, tied, seed, acc, ll, elbo, sample_acc=0.9, variant=""):
    key = f"mnist-{objective}{'_' + variant if variant else ''}-{'tied' if tied else 'untied'}-s{seed}"
    return {"key": key, "dataset": "mnist", "objective": objective, "tied": tied, "seed": seed, "variant": variant,
            "epochs": 20, "test_acc": acc, "elbo": elbo, "log_likelihood": ll, "log_likelihood_K": 1000,
            "self_consistency": 0.99, "sample_acc": sample_acc, "diversity": 0.8,
            "approx_error": {"deterministic": [0.05, 0.04], "mean_variance": [0.02, 0.03]},
            "seconds_per_epoch": 3.0, "curves": {"val/acc": [0.9, 0.95], "train/recognition_epoch": [0.3, 0.1]},
            "samples_png": f"samples/{key}.png", "command": f"python scripts/reproduce.py --only {key}"}


def test_report_tables_reading_and_targets(tmp_path):
    runs = [row("symmetric", True, s, a, -95.0 + s, -110.0) for s, a in enumerate([0.979, 0.981, 0.983])]
    runs += [row("discriminative", True, 0, 0.985, -300.0, -400.0),
             row("symmetric", False, 0, 0.978, -120.0, -160.0),
             row("symmetric", True, 0, 0.95, -96.0, -111.0, variant="w1"),
             row("hybrid", True, 0, 0.97, -90.0, -100.0, sample_acc=0.96),
             row("symmetric", True, 0, 0.984, -97.0, -112.0, variant="e60"),
             row("symmetric", True, 1, 0.986, -97.0, -112.0, variant="e60"),
             row("discriminative", True, 0, 0.987, -300.0, -400.0, variant="e60")]
    runs[-5]["change"] = "weight 1"
    runs[-4]["adopted_from"] = ".cache/runs_h/by_hand"  # made by hand with the row's recipe (reproduce --adopt)
    for r in runs[-3:]:
        r["change"], r["epochs"] = "60 epochs", 60
    (tmp_path / "runs").mkdir()
    for r in runs:
        (tmp_path / "runs" / f"{r['key']}.json").write_text(json.dumps(r))
    (tmp_path / "runs" / "reference-mnist.json").write_text(json.dumps({"test_acc": 0.99, "command": "c"}))
    write_report(tmp_path)

    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["runs"]) == 10 and "curves" not in results["runs"][0]
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| symmetric | tied | 3 | 20 | 98.10 ± 0.20 |" in md  # mean ± sd over the 3 seeds
    # variants get their own table, each under the matrix row it changes, and stay out of the matrix's
    assert "| symmetric (w1) | tied" not in md and "| hybrid | tied" not in md
    table = md[md.index("## Recipe variants"):]
    base = "| mnist symmetric | — (the recipe) | 3 | 20 | 98.10 ± 0.20 |"
    assert table.index(base) < table.index("| mnist symmetric (w1) | weight 1 | 1 | 20 | 95.00 |")
    assert table.count(base) == 1  # the recipe's row once, above all its variants
    assert "| mnist symmetric (e60) | 60 epochs | 2 | 60 | 98.50 ± 0.14 |" in table  # seeds pooled
    assert "| mnist hybrid | hybrid | 1 | 20 | 97.00 | -100.0 | -90.0 (1000) | 96.0 |" in table
    assert "symmetric test accuracy ≥ 98.0%: 98.10% — met" in md
    assert "discriminative test accuracy ≥ 98.2%: 98.50% — met" in md
    assert "symmetric sample accuracy ≥ 95%: 90.00% — MISSED, missed by 5.00 points" in md
    assert "best tied log-likelihood ≥ −100 nats (`hybrid`): -90.0 — met" in md
    assert "best tied generative recipe, test accuracy ≥ 98.0% (`symmetric (e60)`, 2 seeds): 98.50% — met" in md
    assert "best tied generative recipe, sample accuracy ≥ 95% (`hybrid`, 1 seed): 96.00% — met" in md
    assert "discriminative test accuracy ≥ 98.2% (`discriminative (e60)`, 1 seed): 98.70% — met" in md
    assert "tied -94.0 vs untied -120.0 nats" in md  # claim 2's comparison, from the numbers
    assert md.count("`mnist-hybrid-tied-s0` from `.cache/runs_h/by_hand`") == 1  # the one adopted row, named
    assert (tmp_path / "curves_mnist.png").is_file()


def test_report_lists_the_runs_not_made_yet(tmp_path):
    (tmp_path / "runs").mkdir()
    r = row("symmetric", True, 0, 0.97, -95.0, -110.0)
    (tmp_path / "runs" / f"{r['key']}.json").write_text(json.dumps(r))
    write_report(tmp_path, expected=[r["key"], "mnist-wake_sleep-tied-s0"])
    md = (tmp_path / "RESULTS.md").read_text()
    assert "1 of the 2 runs of `make reproduce` (matrix and variants) have no result yet" in md
    assert "`mnist-wake_sleep-tied-s0`" in md and f"`{r['key']}`." not in md


def test_the_reference_line_names_the_classifiers_it_replaced():
    from scripts.report import reference_line

    assert reference_line({"test_acc": 0.99, "command": "c"}) == "Reference CNN test accuracy: 99.00% (`c`)."
    line = reference_line({"test_acc": 0.9882, "command": "new", "replaced": [{"test_acc": 0.9885, "command": "old"}]})
    assert line.startswith("Reference CNN test accuracy: 98.82% (`new`). It replaced 98.85% (`old`): ")
    assert "`reference_test_acc`" in line
