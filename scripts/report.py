"""Build results.json and RESULTS.md (tables, sample grids, learning curves, a reading) from runs/*.json."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

TARGETS = {  # issue "Reproduction report": MNIST, tied pairs
    "symmetric_test_acc": 0.980,
    "discriminative_test_acc": 0.982,
    "symmetric_sample_acc": 0.95,
    "best_tied_log_likelihood": -100.0,
}


def load_runs(out: Path) -> tuple[list[dict], dict]:
    runs, refs = [], {}
    for path in sorted((out / "runs").glob("*.json")):
        obj = json.loads(path.read_text())
        if path.name.startswith("reference-"):
            refs[path.stem.removeprefix("reference-")] = obj
        else:
            runs.append(obj)
    return runs, refs


def fmt(values: list[float], digits: int = 2, scale: float = 1.0) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


MATRIX_OBJECTIVES = ("discriminative", "symmetric", "wake_sleep")


def is_variant(run: dict) -> bool:
    """A recipe variant (scripts/reproduce.py VARIANTS), not a row of the matrix."""
    return bool(run.get("variant")) or run["objective"] not in MATRIX_OBJECTIVES


def label(run: dict) -> str:
    return f"{run['objective']} ({run['variant']})" if run.get("variant") else run["objective"]


def groups(runs: list[dict], dataset: str) -> list[tuple[str, bool, list[dict]]]:
    """The matrix rows of a dataset, by (objective, tied), seeds pooled."""
    out = []
    for objective in MATRIX_OBJECTIVES:
        for tied in (True, False):
            g = [r for r in runs if r["dataset"] == dataset and r["objective"] == objective
                 and r["tied"] == tied and not is_variant(r)]
            if g:
                out.append((objective, tied, g))
    return out


def variant_groups(runs: list[dict]) -> list[tuple[dict, list[dict], list[dict]]]:
    """(a run describing the variant, its runs over seeds, the matrix runs it changes) per recipe variant."""
    keyf = lambda r: (r["dataset"], r["objective"], r["tied"], r.get("variant", ""))  # noqa: E731
    out: dict[tuple, list[dict]] = {}
    for r in sorted((r for r in runs if is_variant(r)), key=lambda r: (*keyf(r), r["seed"])):
        out.setdefault(keyf(r), []).append(r)
    return [(g[0], g, [r for r in runs if not is_variant(r) and keyf(r)[:3] == k[:3]]) for k, g in out.items()]


def variant_table(runs: list[dict]) -> list[str]:
    """Each recipe variant (seeds pooled) under the matrix row (same dataset, objective, tying) it changes."""
    vg = variant_groups(runs)
    if not vg:
        return []
    md = ["| run | what changed | seeds | epochs | test acc (%) | ELBO | log-lik. (K) | sample acc (%) | s/epoch |",
          "|---|---|---|---|---|---|---|---|---|"]
    shown = set()
    for first, g, base in vg:
        rows = []
        base_key = (first["dataset"], first["objective"], first["tied"])
        if base and base_key not in shown:
            shown.add(base_key)
            rows.append((f"{first['dataset']} {first['objective']}", "— (the recipe)", base))
        rows.append((f"{first['dataset']} {label(first)}", first.get("change") or label(first), g))
        for name, change, rs in rows:
            md.append(
                f"| {name} | {change} | {len(rs)} | {rs[0]['epochs']} | {fmt([r['test_acc'] for r in rs], 2, 100)} "
                f"| {fmt([r['elbo'] for r in rs], 1)} | {fmt([r['log_likelihood'] for r in rs], 1)} "
                f"({rs[0]['log_likelihood_K']}) "
                f"| {fmt([r['sample_acc'] for r in rs if r.get('sample_acc') is not None], 1, 100)} "
                f"| {fmt([r['seconds_per_epoch'] for r in rs], 1)} |")
    return md


def mean_of(g: list[dict], key: str) -> float | None:
    vals = [r[key] for r in g if r.get(key) is not None]
    return statistics.mean(vals) if vals else None


def plot_curves(runs: list[dict], dataset: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in runs if r["dataset"] == dataset and r["seed"] == 0 and r.get("curves") and not is_variant(r)]
    if not chosen:
        return False
    not_parts = ("train/loss_epoch", "train/generative_scale_epoch")  # the total, and a schedule's scale
    parts = sorted({k for r in chosen for k in r["curves"] if k.startswith("train/") and k not in not_parts})
    panels = ["val/acc"] + parts
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    labels = [f"{label(r)} {'tied' if r['tied'] else 'untied'}" for r in chosen]
    colors = {lab: f"C{i}" for i, lab in enumerate(labels)}  # one colour per run in every panel
    for ax, name in zip(axes[0], panels):
        for r, lab in zip(chosen, labels):
            if name in r["curves"]:
                ys = r["curves"][name]
                ax.plot(range(1, len(ys) + 1), ys, label=lab, color=colors[lab],
                        linestyle="-" if r["tied"] else "--")
        ax.set_title(name.replace("_epoch", ""))
        ax.set_xlabel("epoch")
        if name != "val/acc":
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def reading(runs: list[dict], refs: dict) -> list[str]:
    """Sentences computed from the numbers: which claims hold, which targets are met, by how much."""
    lines = []
    mn = {(o, t): g for o, t, g in groups(runs, "mnist")}

    def acc(o, t):
        return mean_of(mn.get((o, t), []), "test_acc")

    sym, disc = acc("symmetric", True), acc("discriminative", True)
    if sym is not None and disc is not None:
        lines.append(
            f"- Claim 3 (a tied pair learned generatively still recognises well): tied `symmetric` reaches "
            f"{sym:.2%} test accuracy on MNIST against {disc:.2%} for the discriminative baseline "
            f"({(sym - disc) * 100:+.2f} points)."
        )
    for o in ("symmetric", "wake_sleep"):
        t, u = mn.get((o, True)), mn.get((o, False))
        if t and u:
            lt, lu = mean_of(t, "log_likelihood"), mean_of(u, "log_likelihood")
            et, eu = mean_of(t, "elbo"), mean_of(u, "elbo")
            lines.append(
                f"- Claim 2 (tying W and W^T keeps the pair consistent), `{o}`: log-likelihood tied {lt:.1f} vs "
                f"untied {lu:.1f} nats; ELBO gap (log-likelihood − ELBO, smaller = more consistent) tied "
                f"{lt - et:.1f} vs untied {lu - eu:.1f} nats."
            )
    det = [statistics.mean(r["approx_error"]["deterministic"]) for r in runs if r.get("approx_error")]
    mv = [statistics.mean(r["approx_error"]["mean_variance"]) for r in runs if r.get("approx_error")]
    if det:
        lines.append(
            f"- Claim 1 (the forward pass approximates the SBN's posterior marginals): mean absolute error of "
            f"the deterministic marginals vs Monte Carlo, averaged over runs and hidden layers, "
            f"{statistics.mean(det):.3f}; mean-variance propagation {statistics.mean(mv):.3f} "
            f"(better in {sum(m < d for d, m in zip(det, mv))} of {len(det)} runs)."
        )
    lines.append("")
    lines.append("Targets (MNIST, tied):")
    checks = [
        ("symmetric test accuracy ≥ 98.0%", sym, TARGETS["symmetric_test_acc"], "{:.2%}"),
        ("discriminative test accuracy ≥ 98.2%", disc, TARGETS["discriminative_test_acc"], "{:.2%}"),
        ("symmetric sample accuracy ≥ 95%", mean_of(mn.get(("symmetric", True), []), "sample_acc"),
         TARGETS["symmetric_sample_acc"], "{:.2%}"),
    ]
    tied_ll = {o: mean_of(mn.get((o, True), []), "log_likelihood") for o in MATRIX_OBJECTIVES}
    tied_ll.update({label(first): mean_of(g, "log_likelihood") for first, g, _ in variant_groups(runs)
                    if first["dataset"] == "mnist" and first["tied"]})
    tied_ll = {o: v for o, v in tied_ll.items() if v is not None}
    if tied_ll:
        best = max(tied_ll, key=tied_ll.get)
        checks.append((f"best tied log-likelihood ≥ −100 nats (`{best}`)", tied_ll[best],
                       TARGETS["best_tied_log_likelihood"], "{:.1f}"))
    # the best tied generative objective or recipe variant (seeds pooled), per target
    cands = [(label(first), g) for first, g, _ in variant_groups(runs)
             if first["dataset"] == "mnist" and first["tied"] and first["objective"] != "discriminative"]
    if cands:
        cands += [(o, mn[(o, True)]) for o in ("symmetric", "wake_sleep") if (o, True) in mn]
        for key, name, target, f in [
            ("test_acc", "test accuracy ≥ 98.0%", TARGETS["symmetric_test_acc"], "{:.2%}"),
            ("sample_acc", "sample accuracy ≥ 95%", TARGETS["symmetric_sample_acc"], "{:.2%}"),
        ]:
            scored = [(mean_of(g, key), lab, len(g)) for lab, g in cands if mean_of(g, key) is not None]
            if scored:
                value, lab, n = max(scored)
                checks.append((f"best tied generative recipe, {name} (`{lab}`, {n} seed{'s' * (n > 1)})", value,
                               target, f))
        disc = [g for first, g, _ in variant_groups(runs) if first["dataset"] == "mnist" and first["tied"]
                and first["objective"] == "discriminative"]
        for g in disc:
            checks.append((f"discriminative test accuracy ≥ 98.2% (`{label(g[0])}`, {len(g)} seed"
                           f"{'s' * (len(g) > 1)})", mean_of(g, "test_acc"), TARGETS["discriminative_test_acc"],
                           "{:.2%}"))
    for name, value, target, f in checks:
        if value is None:
            lines.append(f"- {name}: not measured")
            continue
        ok = value >= target
        gap = f"{(target - value) * 100:.2f} points" if "%" in f else f"{target - value:.1f} nats"
        miss = "" if ok else f", missed by {gap}"
        lines.append(f"- {name}: {f.format(value)} — {'met' if ok else 'MISSED'}{miss}")
    return lines


def reference_line(ref: dict) -> str:
    """The reference CNN, and any it replaced: sample accuracies are each scored by the classifier of their time."""
    line = f"Reference CNN test accuracy: {ref['test_acc']:.2%} (`{ref['command']}`)."
    if ref.get("replaced"):
        line += (" It replaced " + ", then ".join(f"{r['test_acc']:.2%} (`{r['command']}`)" for r in ref["replaced"])
                 + ": a row's sample accuracies are scored by the classifier of its time, recorded as "
                 "`reference_test_acc` in results.json (rows without it: before that record, by an earlier one).")
    return line


def write_report(out: Path, expected: list[str] | None = None) -> None:
    """`expected`: the keys of the whole matrix; rows not run yet are listed with the command that runs them."""
    runs, refs = load_runs(out)
    results = [{k: v for k, v in r.items() if k != "curves"} for r in runs]
    (out / "results.json").write_text(json.dumps({"runs": results, "reference_classifiers": refs}, indent=1))
    md = ["# Results", "",
          "Generated by `scripts/report.py` from `runs/*.json` (written by `make reproduce`, i.e. "
          "`python -m scripts.reproduce`). Each run's own command is in `results.json` (`command`): rows made since "
          "the study runs through the CLI record their `coupled fit ...` line, which reruns the row as it is; older "
          "rows record `python scripts/reproduce.py --only <row>` of their session. Accuracy on the grey-level "
          "test set; likelihoods in "
          "nats on the test set binarized once with a fixed seed (ELBO: K = 1; log-likelihood: K as listed); "
          "sample accuracy: the reference CNN on 1,000 ancestral samples per class; diversity: mean pairwise "
          "distance of samples over that of real test images of the class; approx. error: mean |marginal − "
          "Monte Carlo| over hidden units (deterministic / mean-variance).", ""]
    for dataset in ("mnist", "fashion_mnist"):
        gs = groups(runs, dataset)
        if not gs:
            continue
        md += [f"## {dataset}", ""]
        if dataset in refs:
            md += [reference_line(refs[dataset]), ""]
        md += ["| objective | W | seeds | epochs | test acc (%) | ELBO | log-lik. (K) | sample acc (%) | diversity "
               "| approx. err det / mv | self-consistency (%) | s/epoch |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for objective, tied, g in gs:
            det = [statistics.mean(r["approx_error"]["deterministic"]) for r in g]
            mv = [statistics.mean(r["approx_error"]["mean_variance"]) for r in g]
            md.append(
                f"| {objective} | {'tied' if tied else 'untied'} | {len(g)} | {g[0]['epochs']} "
                f"| {fmt([r['test_acc'] for r in g], 2, 100)} | {fmt([r['elbo'] for r in g], 1)} "
                f"| {fmt([r['log_likelihood'] for r in g], 1)} ({g[0]['log_likelihood_K']}) "
                f"| {fmt([r['sample_acc'] for r in g], 1, 100)} | {fmt([r['diversity'] for r in g], 2)} "
                f"| {fmt(det, 3)} / {fmt(mv, 3)} | {fmt([r['self_consistency'] for r in g], 1, 100)} "
                f"| {fmt([r['seconds_per_epoch'] for r in g], 1)} |"
            )
        md.append("")
        # rows restored from results.json carry no curves: keep the plot their first session drew
        if plot_curves(runs, dataset, out / f"curves_{dataset}.png") or (out / f"curves_{dataset}.png").exists():
            md += ["Learning curves (seed 0; validation accuracy and each training loss part per epoch):", "",
                   f"![curves {dataset}](curves_{dataset}.png)", ""]
        md += ["Sample grids (row = class; first column the deterministic mean image, then 10 ancestral "
               "samples):", ""]
        for objective, tied, g in gs:
            md += [f"- {objective}, {'tied' if tied else 'untied'}: ![{g[0]['key']}]({g[0]['samples_png']})"]
        md.append("")
    vt = variant_table(runs)
    if vt:
        md += ["## Recipe variants", "",
               "Each variant changes one or two things of the recipe (MNIST, tied) and is shown under the matrix "
               "row it changes (means ± sd where seeds repeat); the same measurements as the tables above. Each "
               "run's command is in `results.json`.", ""] + vt + [""]
        md += ["Sample grids:", ""]
        md += [f"- {label(first)}: ![{first['key']}]({first['samples_png']})" for first, _, _ in variant_groups(runs)]
        md.append("")
    adopted = [r for r in runs if r.get("adopted_from")]
    if adopted:
        md += ["Rows read from a finished run made by hand whose config is the row's (`--adopt`, checked against the "
               "row's command with `--print_config`; their seconds per epoch are as that run ran): "
               + ", ".join(f"`{r['key']}` from `{r['adopted_from']}`" for r in adopted) + ".", ""]
    missing = [k for k in (expected or []) if k not in {r["key"] for r in runs}]
    if missing:
        md += ["## Not run yet", "",
               f"{len(missing)} of the {len(expected)} runs of `make reproduce` (matrix and variants) have no "
               "result yet (it was stopped for time); `make reproduce` runs exactly these, skipping the finished "
               "ones: "
               + ", ".join(f"`{k}`" for k in missing) + ".", ""]
    md += ["## Reading", ""] + reading(runs, refs) + [""]
    notes = out / "NOTES.md"
    if notes.exists():
        md += [notes.read_text()]
    (out / "RESULTS.md").write_text("\n".join(md))
