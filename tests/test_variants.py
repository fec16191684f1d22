"""``[[grid.variants]]`` (issue 28's interventions): one change at a time against the fixed
values, crossed with the axes, in a sweep grid file and in a study file.

The cells and configs of a variants grid against a hand-written list; a variant's run trains
with exactly its override (config.json) and the baseline's with none; a study table pairs each
variant with the baseline by seed (against a hand computation from the summaries); a resume
re-expands the recorded variants; bad variants exit 2 with one line and write nothing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from _runs_helpers import one_line_error
from binaryvae.cli import main

GRID = """\
datasets = ["mnist-mini"]
families = ["bernoulli-sfe"]
latent-dims = [4]
hidden = [16]
batch-size = 500
threads = 1
device = "cpu"
steps = 3
summary-iwae-k = 10
{extra}
[[variants]]
name = "baseline"

[[variants]]
name = "adam-eps-1e-4"
adam-eps = 1e-4

[[variants]]
name = "sgd-m0.9"
optimizer = "sgd"
momentum = 0.9
lr = 3e-4
steps = 4
"""


def _grid_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def test_a_variants_grid_has_the_hand_written_cells_and_configs():
    """2 families x 2 varied batch sizes x 3 variants, variants innermost; each config is the
    fixed values with exactly the variant's options on top (dataclasses.replace by hand); a
    variant's budget replaces the other; a family option goes to extra; the recorded grid
    gives the same cells."""
    from binaryvae.config import TrainConfig
    from binaryvae.runs.sweep_grid import Grid, grid_from_values

    values = {
        "datasets": ["mnist-mini"], "families": ["bernoulli-sfe", "bernoulli-reinforce-loo"],
        "latent-dims": [4], "hidden": [16], "epochs": 2, "lr": 1e-3, "seeds": "0-1",
        "vary": {"batch-size": [100, 500]},
        "variants": [{"name": "baseline"}, {"name": "eps", "adam-eps": 1e-4},
                     {"name": "short", "steps": 7, "optimizer": "sgd", "momentum": 0.5}],
    }  # fmt: skip
    grid = grid_from_values(values)
    cells = grid.cells()
    expected = []
    for family in ("bernoulli-sfe", "bernoulli-reinforce-loo"):
        for batch in (100, 500):
            base = TrainConfig(dataset="mnist-mini", family=family, objective="elbo",
                               latent_dim=4, hidden=(16,), epochs=2, lr=1e-3, seed=0,
                               batch_size=batch)  # fmt: skip
            stem = f"mnist-mini_{family}_elbo_4bit_batch-size-{batch}"
            expected += [
                (f"{stem}_baseline", "baseline", base),
                (f"{stem}_eps", "eps", dataclasses.replace(base, adam_eps=1e-4)),
                (f"{stem}_short", "short", dataclasses.replace(
                    base, steps=7, epochs=None, optimizer="sgd", momentum=0.5)),
            ]  # fmt: skip
    assert [(c.name, c.variant, c.config) for c in cells] == expected
    assert all(c.seeds == (0, 1) and c.vary == {"batch_size": c.config.batch_size}
               for c in cells)  # fmt: skip
    assert [c.to_dict()["variant"] for c in cells[:3]] == ["baseline", "eps", "short"]
    again = Grid.from_dict(json.loads(json.dumps(grid.to_dict())), "recorded")
    assert [(c.name, c.variant, c.config) for c in again.cells()] == expected
    loo = grid_from_values({"families": "bernoulli-reinforce-loo", "epochs": 1,
                            "variants": [{"name": "k2"}, {"name": "k4", "loo-samples": 4}]})
    assert [c.config.extra for c in loo.cells()] == [{}, {"loo_samples": 4}]


def test_a_variant_trains_with_exactly_its_override_and_a_resume_re_expands_it(
    tmp_path, capsys
):
    """``binaryvae sweep --grid`` with three variants: each run's config.json differs from the
    baseline's in exactly the variant's fields (and the baseline's holds the defaults); the
    optimizer really is SGD with momentum; ``--resume`` from sweep.json retrains nothing; a
    changed or dropped variant is refused (exit 2, one line, nothing rewritten)."""
    import torch

    from binaryvae.config import TrainConfig

    grid = _grid_file(tmp_path, GRID.format(extra=""))
    out = tmp_path / "sweep"
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 0
    stem = out / "mnist-mini_bernoulli-sfe_elbo_4bit"
    configs = {v: json.loads((Path(f"{stem}_{v}") / "seed-0" / "config.json").read_text())
               for v in ("baseline", "adam-eps-1e-4", "sgd-m0.9")}  # fmt: skip
    base = configs["baseline"]
    default = TrainConfig()
    assert (base["adam_eps"], base["optimizer"], base["momentum"], base["lr"]) == (
        default.adam_eps, default.optimizer, default.momentum, default.lr)
    for variant, change in (("adam-eps-1e-4", {"adam_eps": 1e-4}),
                            ("sgd-m0.9", {"optimizer": "sgd", "momentum": 0.9, "lr": 3e-4,
                                          "steps": 4})):  # fmt: skip
        mine = configs[variant]
        assert {k for k in mine if mine[k] != base[k]} == set(change), variant
        assert {k: mine[k] for k in change} == change
    state = torch.load(Path(f"{stem}_sgd-m0.9") / "seed-0" / "checkpoints" / "last.pt",
                       weights_only=False)["optimizer"]  # fmt: skip
    assert state["param_groups"][0]["momentum"] == 0.9 and state["param_groups"][0]["lr"] == 3e-4
    record = json.loads((out / "sweep.json").read_text())
    assert [c["variant"] for c in record["cells"]] == ["baseline", "adam-eps-1e-4", "sgd-m0.9"]
    assert record["grid"]["variants"][2] == {"name": "sgd-m0.9", "optimizer": "sgd",
                                             "momentum": 0.9, "lr": 3e-4, "steps": 4}  # fmt: skip
    from binaryvae.runs.sweep import read_sweep_summaries

    # the variant's own budget (4 steps, not the grid's 3) is what finishes its runs
    _, summaries = read_sweep_summaries(out)
    assert {name[len(stem.name) + 1:]: s[0]["steps"] for name, s in summaries.items()} == {
        "baseline": 3, "adam-eps-1e-4": 3, "sgd-m0.9": 4}
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/seed-*/summary.json")}
    assert len(mtimes) == 3
    assert main(["sweep", "--out", str(out), "--resume", "--quiet", "--no-report"]) == 0
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    again = json.loads((out / "sweep.json").read_text())
    assert [(c["name"], c["variant"], c["status"]) for c in again["cells"]] == [
        (c["name"], c["variant"], "finished") for c in record["cells"]]
    assert again["grid"]["variants"] == record["grid"]["variants"]
    # a variant's budget may grow like the grid's (a resumable field): only its cell trains on
    longer = _grid_file(tmp_path, GRID.format(extra="").replace("steps = 4", "steps = 6"))
    argv = ["sweep", "--grid", str(longer), "--out", str(out), "--quiet", "--no-report"]
    assert main(argv) == 0
    changed = {p.parent.parent.name for p in mtimes if p.stat().st_mtime_ns != mtimes[p]}
    assert changed == {f"{stem.name}_sgd-m0.9"}
    sgd = json.loads((Path(f"{stem}_sgd-m0.9") / "seed-0" / "summary.json").read_text())
    assert sgd["steps"] == 6
    before = (out / "sweep.json").read_bytes()
    for text, words in (
        (GRID.format(extra="").replace("adam-eps = 1e-4", "adam-eps = 1e-5"),
         "cannot change adam_eps"),
        (GRID.format(extra="").replace('name = "adam-eps-1e-4"\nadam-eps = 1e-4\n', 'name = "x"\n'),
         "variants adam-eps-1e-4"),
    ):  # fmt: skip
        changed = _grid_file(tmp_path, text)
        argv = ["sweep", "--grid", str(changed), "--out", str(out), "--quiet", "--no-report"]
        assert main(argv) == 2
        assert words in one_line_error(capsys)
        assert (out / "sweep.json").read_bytes() == before


STUDY = """\
title = "t"
about = "a"
docs = "d"
seeds = [0, 1]
[grid]
datasets = ["mnist-mini"]
families = ["bernoulli-sfe"]
latent-dims = [4]
hidden = [16]
batch-size = 500
steps = 3
summary-iwae-k = 10
[[grid.variants]]
name = "baseline"
[[grid.variants]]
name = "lr-1e-2"
lr = 1e-2
[[grid.variants]]
name = "eps"
adam-eps = 1e-2
[budget.full]
[budget.quick]
[[table]]
title = "each variant minus the baseline"
measures = ["test_elbo", "last.train_elbo"]
baseline = { variant = "baseline" }
"""


def test_a_study_table_pairs_each_variant_with_the_baseline_by_seed(tmp_path):
    """study.json's differences: each non-baseline variant minus the baseline, its mean the
    mean over seeds of the two summary.json values' difference (computed here)."""
    study = tmp_path / "interventions.toml"
    study.write_text(STUDY)
    out = tmp_path / "out"
    argv = ["reproduce", str(study), "--budget", "quick", "--out", str(out), "--threads", "1",
            "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    (table,) = json.loads((out / "study.json").read_text())["tables"]
    assert table["coordinates"] == ["variant"]
    stem = "mnist-mini_bernoulli-sfe_elbo_4bit"
    assert [(d["cell"], d["baseline"]) for d in table["differences"]] == [
        (f"{stem}_lr-1e-2", f"{stem}_baseline"), (f"{stem}_eps", f"{stem}_baseline")]

    def value(variant: str, seed: int, measure: str) -> float:
        run = out / f"{stem}_{variant}" / f"seed-{seed}"
        if measure.startswith("last."):
            rows = (run / "metrics.jsonl").read_text().splitlines()
            return json.loads(rows[-1])[measure[len("last."):]]
        return json.loads((run / "summary.json").read_text())[measure]

    for d, variant in zip(table["differences"], ("lr-1e-2", "eps"), strict=True):
        assert d["label"] == f"variant={variant} minus variant=baseline"
        for measure in ("test_elbo", "last.train_elbo"):
            diffs = [value(variant, s, measure) - value("baseline", s, measure) for s in (0, 1)]
            got = d["measures"][measure]
            assert got["seeds"] == [0, 1] and got["n"] == 2
            assert got["mean"] == pytest.approx(sum(diffs) / 2, rel=1e-12, abs=1e-12)
            assert diffs[0] != diffs[1]  # the pairing is by seed, not by a shared number


@pytest.mark.parametrize(
    ("variants", "words"),
    [
        ("variants = []", "variants is empty"),
        ("variants = 3", "variants is a list of tables"),
        ('[[variants]]\nlr = 1e-3', "variant 1 has no name"),
        ('[[variants]]\nname = "a"\n[[variants]]\nname = "a"', "two variants are named 'a'"),
        ('[[variants]]\nname = "a/b"', "variant 1: name 'a/b' is not a name"),
        ('[[variants]]\nname = ""', "variant 1: name '' is not a name"),
        ('[[variants]]\nname = "a"\nnosuch = 1', "variant a: nosuch: unknown option"),
        ('[[variants]]\nname = "a"\ndataset = "mnist"', "datasets is an axis of the grid"),
        ('[[variants]]\nname = "a"\nseeds = [1]', "seeds is an axis of the grid"),
        ('[vary]\nlr = [1e-3, 1e-4]\n[[variants]]\nname = "a"\nlr = 1e-2',
         "variant a: lr: lr is varied"),
        ('[[variants]]\nname = "a"\nadam-eps = -1.0', "(variant a):"),
        ('[[variants]]\nname = "a"\nlr = [1, 2]', "variant a: lr: [1, 2] is not one value"),
    ],
)
def test_bad_variants_exit_2_with_one_line_and_write_nothing(variants, words, tmp_path, capsys):
    text = "families = [\"bernoulli-sfe\"]\nepochs = 1\n" + variants + "\n"
    grid = _grid_file(tmp_path, text)
    out = tmp_path / "out"
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--quiet", "--no-report"]) == 2
    line = one_line_error(capsys)
    assert words in line, line
    assert not out.exists()
