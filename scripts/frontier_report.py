"""The frontier study's report (FRONTIER.md, frontier.png, frontier.json) from <out>/runs/*.json.

One point per run: test accuracy against the likelihood of the generator (the larger of the own-q and the
fitted-proposal estimates), marker = objective, colour = accuracy of the reference CNN on its binary
samples, filled = tied. The reading compares the tied and untied Pareto fronts (claim 2) and names the best point.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning_modules.files import atomic_write_text

MARKERS = {"symmetric": "o", "wake_sleep": "s", "rws": "^", "vimco": "D"}
ACC_FLOOR = 0.98  # "recognises": the matrix's accuracy target for the paper's tied pair


def load(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))
            if not p.name.startswith("reference-")]


def likelihood(run: dict) -> float:
    """The generator's likelihood: the larger of the own-q and fitted-proposal estimates (both are stochastic
    lower bounds, and a short fit can land below a proposal that was already good)."""
    fitted = run.get("log_likelihood_fitted")
    return max(fitted, run["log_likelihood"]) if fitted is not None else run["log_likelihood"]


def pareto(runs: list[dict]) -> list[dict]:
    """Runs no other run beats on both accuracy and likelihood, by likelihood."""
    front = [r for r in runs if not any(o["test_acc"] >= r["test_acc"] and likelihood(o) >= likelihood(r)
                                        and (o["test_acc"], likelihood(o)) != (r["test_acc"], likelihood(r))
                                        for o in runs)]
    return sorted(front, key=likelihood)


def describe(run: dict) -> str:
    kw = run["recipe"]["objective_kwargs"]
    k = f", K = {kw['num_samples']}" if "num_samples" in kw else ""
    return f"{run['objective']} w = {kw.get('generation_weight', 1):g}{k} ({'tied' if run['tied'] else 'untied'})"


def fmt(value, digits=2, scale=1.0) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def table(runs: list[dict]) -> list[str]:
    lines = ["| objective | tied | w | K | test acc % | log p own | log p fitted | fitted − own | "
             "sample acc % (binary) | sample acc % (means) | diversity | s / epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (not r["tied"], r["objective"], r["variant"])):
        kw = r["recipe"]["objective_kwargs"]
        gap = None if r.get("log_likelihood_fitted") is None else r["log_likelihood_fitted"] - r["log_likelihood"]
        lines.append(
            f"| {r['objective']} | {'yes' if r['tied'] else 'no'} | {kw.get('generation_weight', 1):g} | "
            f"{kw.get('num_samples', '–')} | {fmt(r['test_acc'], 2, 100)} | {fmt(r['log_likelihood'])} | "
            f"{fmt(r.get('log_likelihood_fitted'))} | {fmt(gap)} | {fmt(r.get('sample_acc'), 1, 100)} | "
            f"{fmt(r.get('sample_acc_means'), 1, 100)} | {fmt(r.get('diversity'))} | "
            f"{fmt(r.get('seconds_per_epoch'), 1)} |")
    return lines


def reading(runs: list[dict]) -> list[str]:
    tied, untied = [r for r in runs if r["tied"]], [r for r in runs if not r["tied"]]
    lines = []
    for name, group in (("tied", tied), ("untied", untied)):
        if group:
            lines.append(f"- Pareto front, {name}: " + "; ".join(
                f"{describe(r)}: {100 * r['test_acc']:.2f}%, {likelihood(r):.1f} nats" for r in pareto(group)))
    if tied and untied:
        beaten = [u for u in pareto(untied) if any(t["test_acc"] >= u["test_acc"] and likelihood(t) >= likelihood(u)
                                                   for t in tied)]
        lines.append(f"- Tying: {len(beaten)} of the {len(pareto(untied))} untied front points are matched or beaten "
                     f"on both axes by a tied run"
                     + (" (the tied front lies on or beyond the untied one)." if len(beaten) == len(pareto(untied))
                        else "; where none is, the untied pair is ahead there."))
    good = [r for r in tied if r["test_acc"] >= ACC_FLOOR]
    if good:
        best = max(good, key=likelihood)
        lines.append(f"- Best tied point with test accuracy ≥ {100 * ACC_FLOOR:.0f}%: {describe(best)}, "
                     f"{100 * best['test_acc']:.2f}%, {likelihood(best):.1f} nats, binary-sample accuracy "
                     f"{fmt(best.get('sample_acc'), 1, 100)}%. Command: `{best['command']}`")
    elif tied:
        best = max(tied, key=lambda r: r["test_acc"])
        lines.append(f"- No tied run reaches {100 * ACC_FLOOR:.0f}% test accuracy; the most accurate is "
                     f"{describe(best)} at {100 * best['test_acc']:.2f}% ({likelihood(best):.1f} nats).")
    return lines


def plot(runs: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return False
    fig, ax = plt.subplots(figsize=(7, 5))
    norm = matplotlib.colors.Normalize(0, 1)
    cmap = matplotlib.colormaps["viridis"]
    for r in runs:
        colour = cmap(norm(r.get("sample_acc") or 0))
        ax.scatter(likelihood(r), 100 * r["test_acc"], marker=MARKERS.get(r["objective"], "x"), s=60,
                   facecolors=colour if r["tied"] else "none", edgecolors=colour, linewidths=1.5)
    for obj, m in MARKERS.items():
        ax.scatter([], [], marker=m, facecolors="grey", edgecolors="grey", label=obj)
    ax.scatter([], [], marker="o", facecolors="none", edgecolors="grey", label="(hollow: untied)")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="sample accuracy (binary)")
    ax.set_xlabel("test log p(x|y), max(own, fitted proposal) (nats)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_frontier_report(out: Path, expected: list[str] | None = None) -> None:
    runs = load(out)
    missing = sorted(set(expected or []) - {r["key"] for r in runs})
    md = ["# Frontier: recognition against generation (MNIST)", "",
          "Generated by `make reproduce FRONTIER=1` (`python -m scripts.reproduce --frontier`) from "
          "`runs/*.json`; each row's command reruns it. x: the larger of the own-q and fitted-proposal likelihoods "
          "(the generator; both are lower bounds); 'fitted − own' is how much the coupled pair's own recognition "
          "network loses as a proposal.", ""]
    if runs:
        r0 = runs[0]
        md += [f"Budget per run: {r0['epochs']} epochs; likelihoods at K = {r0['log_likelihood_K']} on "
               f"{r0['recipe']['test_images'] or 'all'} test images; device {r0.get('device', '?')}.", ""]
    if plot(runs, out / "frontier.png") and runs:
        md += ["![frontier](frontier.png)", ""]
    md += ["## Reading", "", *reading(runs), "", "## Runs", "", *table(runs), ""]
    if missing:
        md += [f"{len(missing)} of the {len(expected)} runs have no results yet: {', '.join(missing)}.", ""]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "FRONTIER.md", "\n".join(md))
    atomic_write_text(out / "frontier.json", json.dumps(runs, indent=1))
