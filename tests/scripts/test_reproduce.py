"""The reproduction matrix: which runs `make reproduce` makes, in which order."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from reproduce import OBJECTIVES, VARIANTS, rows  # noqa: E402


def test_the_matrix_has_three_seeds_for_mnist_tied_and_one_elsewhere():
    matrix = rows(quick=False)
    keys = [r["key"] for r in matrix]
    assert len(keys) == len(set(keys)) == 18  # 2 datasets x 3 objectives x tied/untied, + 2 seeds x 3
    seeds = Counter((r["dataset"], r["objective"], r["tied"]) for r in matrix)
    for dataset in ("mnist", "fashion_mnist"):
        for objective in OBJECTIVES:
            assert seeds[(dataset, objective, True)] == (3 if dataset == "mnist" else 1)
            assert seeds[(dataset, objective, False)] == 1
    assert not any(r["variant"] for r in matrix)


def test_variants_come_after_the_matrix_and_only_when_asked():
    matrix, both = rows(quick=False), rows(quick=False, variants=True)
    assert both[: len(matrix)] == matrix
    extra = both[len(matrix):]
    assert len(extra) == sum(len(seeds) for *_, seeds in VARIANTS)
    assert all(r["dataset"] == "mnist" and r["tied"] and r["change"] for r in extra)
    wide = next(r for r in extra if r["variant"] == "wide")
    assert wide["hidden_sizes"] == [1024, 1024]
    assert rows(quick=True, variants=True) == rows(quick=True)  # the smoke run has no variants
    assert len(rows(quick=True)) == 12
