"""A bare training loop for quick recipe probes (the generation weight, lr schedule) on MNIST.

    python scripts/recipe_probe.py OBJECTIVE EPOCHS LR [GENERATION_WEIGHT] [cosine|none]

Trains 784-512-512-10 with Adam on the first 55,000 training images (dynamically binarized), prints one
JSON line per epoch (validation accuracy on the last 5,000 grey images, their -log p(x|y) by the
deterministic backward pass, the last batch's loss parts) and the test accuracy at the end. The numbers
in reports/NOTES.md about the generation weight come from this script.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import datasets  # noqa: E402

from lightning_modules import OBJECTIVES, CoupledSigmoidNet  # noqa: E402


def load(mirror: Path):
    ds = datasets.load_dataset(str(mirror))

    def split(s):
        x = np.stack([np.array(img) for img in ds[s]["image"]])
        return torch.from_numpy(x.reshape(len(x), -1)), torch.tensor(ds[s]["label"])

    return (*split("train"), *split("test"))


def main() -> None:
    obj, epochs, lr = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    gw = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    sched = sys.argv[5] if len(sys.argv) > 5 else "none"
    torch.manual_seed(0)
    X, Y, XT, YT = load(ROOT.parent / "shared" / "data" / "mnist")
    Xtr, Ytr, Xv, Yv = X[:55000], Y[:55000], X[55000:], Y[55000:]
    net = CoupledSigmoidNet([784, 512, 512, 10])
    opt = torch.optim.Adam(net.parameters(), lr)
    S = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs) if sched == "cosine" else None
    kw = {"generation_weight": gw} if obj == "symmetric" else {}
    for ep in range(epochs):
        t = time.time()
        perm = torch.randperm(55000)
        for i in range(0, 55000, 128):
            idx = perm[i : i + 128]
            x, y = torch.bernoulli(Xtr[idx].float() / 255), Ytr[idx].long()
            out = OBJECTIVES[obj](net, x, y, **kw)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        if S:
            S.step()
        with torch.no_grad():
            acc = (net.recognize(Xv.float() / 255).argmax(1) == Yv).float().mean().item()
            g = -OBJECTIVES["symmetric"](net, Xv.float() / 255, Yv.long())["generation"].item()
        print(json.dumps(dict(ep=ep, acc=acc, gen=g, sec=time.time() - t, **{k: v.item() for k, v in out.items()})),
              flush=True)
    with torch.no_grad():
        print("test acc", (net.recognize(XT.float() / 255).argmax(1) == YT).float().mean().item())


if __name__ == "__main__":
    main()
