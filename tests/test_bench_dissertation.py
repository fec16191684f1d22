"""bench/dissertation.py's reading of the per-epoch records: the claim by budget is the paired
difference by seed with a Student-t interval (checked against scipy and a plain loop), and the
curves figure draws the tracked panels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import dissertation  # noqa: E402


def _run(family, objective, seed, elbos, log_pxs, epochs=6):
    records = [
        {"epoch": e, "discrete_elbo": v, "log_px": w, "logit_abs_median": 1.0 + e,
         "logit_abs_q99": 2.0 + e, "bits_flipped": None if e == 1 else 0.01,
         "saturated_bits_flipped": None if e == 1 else 0.0}  # fmt: skip
        for e, v, w in zip(range(1, epochs + 1), elbos, log_pxs, strict=True)
    ]
    return {"dataset": "mnist-mini", "family": family, "objective": objective, "seed": seed,
            "epochs": epochs, "by_epoch": records, "track_images": 1000,
            "trained_objective_train_by_epoch": [v - 1 for v in elbos]}  # fmt: skip


def _groups():
    values = {  # (entry, seed) -> discrete ELBO by epoch; log p(x) = ELBO + 3 + seed
        ("steplogistic", 0): [-300, -250, -220, -210, -205, -230],
        ("steplogistic", 1): [-301, -252, -221, -212, -204, -260],
        ("steplogistic", 2): [-299, -251, -222, -209, -206, -245],
        ("logistic", 0): [-305, -255, -225, -212, -206, -204],
        ("logistic", 1): [-304, -256, -226, -211, -207, -203],
        ("logistic", 2): [-306, -254, -227, -213, -205, -205],
    }
    groups = {}
    for (entry, seed), elbos in values.items():
        run = _run(entry, "elbo", seed, elbos, [v + 3 + seed for v in elbos])
        groups.setdefault(("mnist-mini", entry), []).append(run)
    return groups, values


def test_claim_by_budget_pairs_by_seed_with_a_student_t_interval():
    groups, values = _groups()
    rows = dissertation.claim_by_budget(groups, epochs=6)
    assert [r["epoch"] for r in rows] == [5, 6]  # budgets below the run's length, then its end
    for row in rows:
        i = row["epoch"] - 1
        diffs = [values[("steplogistic", s)][i] - values[("logistic", s)][i] for s in (0, 1, 2)]
        mean = sum(diffs) / 3
        sd = (sum((d - mean) ** 2 for d in diffs) / 2) ** 0.5
        half = stats.t.ppf(0.975, 2) * sd / 3**0.5
        d = row["discrete_elbo_diff"]
        assert d["mean"] == pytest.approx(mean)
        assert d["ci95"] == pytest.approx([mean - half, mean + half])
        # log p(x) differs from the ELBO by 3 + seed in both entries: the same differences
        assert row["log_px_diff"]["diffs"] == pytest.approx(diffs)
    assert rows[0]["verdict_discrete_elbo"].startswith("no difference")  # +1.0 [-4.0, +6.0]
    assert rows[1]["verdict_discrete_elbo"].startswith("lower")  # -41.0 [-79.5, -2.5]


def test_the_claim_by_budget_needs_two_seeds_with_records():
    groups, _ = _groups()
    for runs in groups.values():
        for r in runs[1:]:
            r["by_epoch"] = []  # recorded before the tracker existed
    assert dissertation.claim_by_budget(groups, epochs=6) == []


def test_curves_figure_draws_the_tracked_panels(tmp_path):
    groups, _ = _groups()
    results = [r for runs in groups.values() for r in runs]
    path = dissertation.plot_curves(results, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    untracked = [dict(r, by_epoch=[]) for r in results]
    small = dissertation.plot_curves(untracked, tmp_path / "small.png")
    from PIL import Image

    assert Image.open(path).size[1] > Image.open(small).size[1]  # two rows of panels, not one


def test_the_learning_rate_names_a_run_only_when_it_is_not_the_dissertations(tmp_path):
    spec = {"dataset": "fashion-mnist", "family": "steplogistic", "objective": "elbo",
            "seed": 3, "epochs": 125, "latent_dim": 8, "max_steps": 0}  # fmt: skip
    old = dissertation.run_file(tmp_path, spec).name  # a result written before --lr existed
    assert old == "diss_fashion-mnist_steplogistic_s3_e125_n8.json"
    assert dissertation.run_file(tmp_path, spec | {"lr": 1e-3}).name == old
    assert dissertation.run_file(tmp_path, spec | {"lr": 1e-4}).name == (
        "diss_fashion-mnist_steplogistic_s3_e125_n8_lr1e-4.json"
    )
    assert [dissertation.lr_text(v) for v in (1e-3, 1e-4, 3e-4)] == ["1e-3", "1e-4", "3e-4"]
