"""The benchmark's bookkeeping: the FLOP count it divides by and the table it writes from bench.json."""

from __future__ import annotations

import argparse

from scripts import bench


def test_ll_matmul_flops_counts_the_three_products_of_a_sample():
    # per sample: h1 (512) -> pixels (784) down, h1 -> h2 up, h2 -> h1 down; a multiply-add is 2 FLOPs
    assert bench.ll_matmul_flops([784, 512, 512, 10], 3) == 2 * 3 * (512 * 784 + 2 * 512 * 512)
    assert bench.ll_matmul_flops([20, 7, 5, 4, 3], 1) == 2 * (7 * 20 + 2 * (7 * 5 + 5 * 4))


def result(**extra) -> dict:
    r = {"train_ratio": 1.18, "train_epoch_seconds": {"framework": 2.9, "plain": 2.45, "bare_lightning": 2.7,
                                                      "bare_lightning_manual": 2.65, "plain_compiled": 2.33},
         "bare_lightning_ratio": 1.1, "bare_lightning_manual_ratio": 1.08, "compiled_ratio": 0.95,
         "lightning_step_overhead_us": 480.0, "lightning_floor_ratio": 1.084,
         "data_fraction": 0.0175, "data_epoch_seconds": 0.05, "data_fraction_without_binarization": 0.006,
         "eval_flops_fraction": 0.74, "eval": {"images": 500, "K": 1000, "seconds": 5.0, "gflops_achieved": 210.0,
                                               "gflops_matmul": 284.0},
         "train_peak_rss_mb": 570.0, "eval_peak_rss_mb": 520.0, "gpu_epoch_seconds": None, "repeats": 5,
         "train_repeats": 9,
         "machine": {"processor": "x86_64", "cpus": 2, "torch": "2.13.0+cpu"}, "command": "make bench"}
    r.update(extra)
    return r


def test_markdown_has_every_measure_with_its_target_and_command(tmp_path):
    path = tmp_path / "BENCH.md"
    bench.write_markdown(result(), path)
    text = path.read_text()
    assert "Produced by `make bench`" in text
    assert "medians of A/B-interleaved repeats: 9 for training and data, 5 for evaluation" in text
    for row in ("| training: framework / plain epoch | 1.180x | ≤ 1.05x |",
                "| training: the same, manual optimization / plain epoch | 1.080x |",
                "| training: Lightning's own cost per step / plain step | 1.084x |",
                "| training: plain loop, objective through torch.compile / eager | 0.950x |",
                "| data: DataModule epoch / training epoch | 1.75% | ≤ 2% |",
                "| evaluation: log_likelihood FLOP/s / matmul | 74% | ≥ 70% |",
                "| memory: peak RSS, evaluation | 520 MB |"):
        assert row in text, row
    assert "GPU: not measured" in text


def test_markdown_has_the_multisample_step_rows(tmp_path):
    path = tmp_path / "BENCH.md"
    steps = {"wake_sleep": 0.010, "rws_K5": 0.032, "vimco_K5": 0.030}
    bench.write_markdown(result(objective_step_seconds=steps), path)
    text = path.read_text()
    assert "| training: rws step (K = 5) / wake_sleep step | 3.20x | ≤ 5x | 32.0 ms vs 10.0 ms, batch 128 |" in text
    assert "| training: vimco step (K = 5) / wake_sleep step | 3.00x |" in text


def test_objective_steps_times_every_arm(monkeypatch):
    monkeypatch.setattr(bench, "SIZES", [20, 8, 6, 3])
    out = bench.objective_steps(repeats=2, steps=2, batch=8)
    assert set(out) == set(bench.OBJECTIVE_ARMS) and all(v > 0 for v in out.values())


def test_markdown_lists_gpu_epochs_when_measured(tmp_path):
    gpu = {"bs128_eager": 0.21, "bs128_cudagraphs": "failed: RuntimeError: x | y", "bs1024_compile": 0.05,
           "flop_floor_seconds": 0.01, "device": "NVIDIA H100"}
    path = tmp_path / "BENCH.md"
    bench.write_markdown(result(gpu_epoch_seconds=gpu, gpu_command="python scripts/bench.py --gpu-only"), path)
    text = path.read_text()
    assert "| GPU epoch, bs128_eager | 0.210 s | ≤ 0.3 s | NVIDIA H100; `python scripts/bench.py --gpu-only` |" in text
    assert "| GPU epoch, bs128_cudagraphs | failed: RuntimeError: x / y | ≤ 0.3 s |" in text  # the table holds
    assert "| GPU epoch, bs1024_compile | 0.050 s |  |" in text
    assert "GPU: not measured" not in text


def test_device_epochs_runs_every_mode_and_the_flop_floor(tmp_path, tiny_data):
    """The GPU section's loop, on the CPU and a tiny dataset: it must run before a GPU session spends time on it."""
    (tmp_path / "mnist").symlink_to(tiny_data)
    out = bench.device_epochs(argparse.Namespace(data_dir=str(tmp_path)), bench.torch.device("cpu"),
                              batch_sizes=(64,), epochs=2, val_size=50)
    assert set(out) == {"bs64_eager", "bs64_compile", "flop_floor_seconds", "device"}
    assert all(isinstance(out[k], float) and out[k] > 0 for k in ("bs64_eager", "bs64_compile")), out
    # positive and finite; how it compares with the measured epochs is a timing, the benchmark's to print (a
    # loaded CPU can slow its matmul probe more than the epochs: the floor then exceeds them)
    assert isinstance(out["flop_floor_seconds"], float) and 0 < out["flop_floor_seconds"] < float("inf")
