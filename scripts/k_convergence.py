"""How the importance-sampled test likelihood of trained models converges in K, own and fitted proposal.

    python scripts/k_convergence.py NAME=CKPT [NAME=CKPT ...] [--ks 1,10,100,1000] [--big-k 5000 --big-images 1000]

For each checkpoint: log p(x|y) on the MNIST test set (binarized once with the model's seed) with the model's own
recognition network and with one fitted to its frozen generator (`lightning_modules/fitted.py`), at every K of
--ks on all test images and at --big-k on the first --big-images. Writes reports/k_convergence.json and
reports/K_CONVERGENCE.md; with the reference CNN (--reference), also the accuracy of 1,000 samples per class.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from callbacks.sample_quality import class_samples, sample_accuracy
from datamodules import MNISTDataModule
from lightning_modules import GenerativeLearner, fixed_binarize
from lightning_modules.fitted import fit_proposal
from lightning_modules.reference import ReferenceCNN

ROOT = Path(__file__).resolve().parents[1]


def estimates(net, x, y, ks, seed=0) -> dict[int, float]:
    out = {}
    for K in ks:
        g = torch.Generator().manual_seed(seed + K)
        out[K] = net.log_likelihood(x, y, K, generator=g).mean().item()
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="NAME=CKPT pairs")
    p.add_argument("--ks", default="1,10,100,1000")
    p.add_argument("--big-k", type=int, default=5000)
    p.add_argument("--big-images", type=int, default=1000)
    p.add_argument("--fit-steps", type=int, default=2000)
    p.add_argument("--data-dir", default=os.environ.get("COUPLED_DATA_DIR"))
    p.add_argument("--reference", default=str(ROOT / ".cache" / "reproduce" / "reference-mnist.ckpt"),
                   help="the reference CNN that scores samples (make reproduce trains it); '' to skip")
    p.add_argument("--out", type=Path, default=ROOT / "reports")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",")]
    data_dir = str(Path(args.data_dir) / "mnist") if args.data_dir else None
    dm = MNISTDataModule(data_dir=data_dir)
    x_test, y_test = dm.split_tensors("test")
    x_train, y_train = dm.split_tensors("train")
    results = {}
    for spec in args.models:
        name, _, ckpt = spec.partition("=")
        t0 = time.perf_counter()
        model = GenerativeLearner.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
        net, seed = model.net, model.hparams.seed
        xb = fixed_binarize(x_test.float() / 255, seed)
        fitted = fit_proposal(net, x_train.float() / 255, y_train, steps=args.fit_steps, lr=model.hparams.lr,
                              seed=seed)
        row = {"ckpt": ckpt, "objective": model.hparams.objective, "tied": model.hparams.tied,
               "fit_steps": args.fit_steps, "all_images": int(len(y_test)), "big_images": args.big_images}
        for label, q in (("own", net), ("fitted", fitted)):
            row[label] = estimates(q, xb, y_test, ks, seed)
            big = estimates(q, xb[: args.big_images], y_test[: args.big_images], [ks[-1], args.big_k], seed)
            row[f"{label}_subset"] = big
            print(f"[k] {name} {label}: {row[label]} subset {big}", flush=True)
        if args.reference and Path(args.reference).is_file():
            clf = ReferenceCNN.for_scoring(args.reference)
            for kind in ("binary", "means"):
                samples, labels = class_samples(net, 1000, seed, kind=kind)
                row[f"sample_acc_{kind}"] = sample_accuracy(samples, labels, clf)
            print(f"[k] {name} sample accuracy: binary {row['sample_acc_binary']:.4f}, means "
                  f"{row['sample_acc_means']:.4f}", flush=True)
        row["seconds"] = time.perf_counter() - t0
        results[name] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "k_convergence.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, ks, args, args.out / "K_CONVERGENCE.md")


def write_markdown(results: dict, ks: list[int], args, path: Path) -> None:
    head = " | ".join(f"K = {k}" for k in ks)
    sub = f"K = {ks[-1]} / {args.big_k} ({args.big_images} images)"
    lines = ["# Likelihood against K, and sample accuracy", "",
             f"Produced by `python scripts/k_convergence.py {' '.join(args.models)}`; nats per test image, MNIST "
             f"test set binarized once; 'fitted': a recognition network fitted to the frozen generator "
             f"({args.fit_steps} RWS wake-q steps from the pair's own). Sample accuracy: the reference CNN on "
             f"1,000 ancestral samples per class, binary and as pixel means p(x0 = 1 | x1).", "",
             f"| model | proposal | {head} | {sub} |", "|---|---|" + "---|" * (len(ks) + 1)]
    for name, r in results.items():
        for label in ("own", "fitted"):
            vals = " | ".join(f"{r[label][k]:.2f}" for k in ks)
            s = r[f"{label}_subset"]
            big = f"{s[ks[-1]]:.2f} / {s[args.big_k]:.2f}"
            lines.append(f"| {name} ({r['objective']}, {'tied' if r['tied'] else 'untied'}) | {label} | {vals} | "
                         f"{big} |")
    if any("sample_acc_binary" in r for r in results.values()):
        lines += ["", "| model | sample acc (binary) | sample acc (means) |", "|---|---|---|"]
        lines += [f"| {name} | {100 * r['sample_acc_binary']:.1f}% | {100 * r['sample_acc_means']:.1f}% |"
                  for name, r in results.items() if "sample_acc_binary" in r]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
