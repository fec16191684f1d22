"""binaryvae.runs: the run directory contract, resume, refusal to overwrite, NaN stop, compare."""

from __future__ import annotations

import json

import pytest
import torch

from _runs_helpers import metric_rows, tiny_config
from binaryvae.config import TrainConfig
from binaryvae.errors import BadInput
from binaryvae.runs import (
    TrainingDiverged,
    compare,
    evaluate_run,
    find_runs,
    parse_families,
    train_run,
)
from binaryvae.training import load_checkpoint

EPOCH_KEYS = {
    "epoch", "objective", "objective_label", "train_loss", "test_relaxed_elbo",
    "test_discrete_elbo", "test_kl", "test_recon", "test_log_px_exact", "train_seconds",
    "eval_seconds",
}  # fmt: skip
SUMMARY_KEYS = {
    "test_relaxed_elbo", "test_discrete_elbo", "test_iwae", "iwae_k", "test_log_px_exact",
    "test_recon", "test_kl", "sample_fd", "seconds_per_epoch", "objective", "objective_label",
    "objective_is_bound", "labels", "family",
}  # fmt: skip


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    """An uninterrupted 3-epoch run of a relaxed family (steplogistic)."""
    out = tmp_path_factory.mktemp("runs") / "a"
    summary = train_run(tiny_config(family="steplogistic", epochs=3), out, progress=False)
    return out, summary


def test_run_directory_follows_the_contract(run3):
    out, summary = run3
    assert (out / "checkpoints" / "last.pt").is_file()
    rows = metric_rows(out, drop_timing=False)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert EPOCH_KEYS <= set(row), EPOCH_KEYS - set(row)
        assert row["objective"] == "elbo"
        assert row["train_seconds"] > 0
    on_disk = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(on_disk), SUMMARY_KEYS - set(on_disk)
    assert "test_bernoulli_elbo" in on_disk  # a relaxed family
    assert on_disk["objective_is_bound"] is True and on_disk["has_likelihood"] is True
    assert on_disk == json.loads(json.dumps(summary))
    # bounds of the discrete model are ordered: discrete ELBO <= exact log p(x)
    assert on_disk["test_discrete_elbo"] <= on_disk["test_log_px_exact"] + 1e-3
    # config.json re-creates the same TrainConfig
    assert TrainConfig.load(out / "config.json") == tiny_config(family="steplogistic", epochs=3)


def test_resume_continues_exactly(run3, tmp_path):
    out, summary = run3
    part = tmp_path / "b"
    train_run(tiny_config(family="steplogistic", epochs=2), part, progress=False)
    assert load_checkpoint(part / "checkpoints" / "last.pt")["epoch"] == 2
    resumed = train_run(tiny_config(family="steplogistic", epochs=3), part, resume=True,
                        progress=False)  # fmt: skip
    assert metric_rows(part) == metric_rows(out)
    for key in ("test_discrete_elbo", "test_log_px_exact", "test_iwae", "test_relaxed_elbo"):
        assert resumed[key] == summary[key]


def test_resume_drops_metric_rows_beyond_the_checkpoint(run3, tmp_path):
    out, _ = run3
    part = tmp_path / "c"
    train_run(tiny_config(family="steplogistic", epochs=2), part, progress=False)
    rows = (part / "metrics.jsonl").read_text().splitlines()
    # as if killed after writing epoch 3's row but before its checkpoint, mid-way through a line
    (part / "metrics.jsonl").write_text(
        "\n".join(rows + [rows[-1].replace('"epoch": 2', '"epoch": 3'), '{"epo'])
    )  # noqa: E501
    train_run(tiny_config(family="steplogistic", epochs=3), part, resume=True, progress=False)
    assert metric_rows(part) == metric_rows(out)


def test_existing_directory_needs_force(run3, tmp_path):
    out, _ = run3
    before = (out / "metrics.jsonl").read_text()
    with pytest.raises(BadInput, match="already exists"):
        train_run(tiny_config(family="steplogistic", epochs=1), out, progress=False)
    assert (out / "metrics.jsonl").read_text() == before
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    with pytest.raises(BadInput, match="binaryvae did not write it"):
        train_run(tiny_config(epochs=1), other, force=True, progress=False)
    assert (other / "precious.txt").read_text() == "keep me"


def test_force_replaces_a_run_and_keeps_files_it_did_not_write(tmp_path):
    out = tmp_path / "r"
    train_run(tiny_config(epochs=2), out, progress=False, stream=None)
    (out / "notes.txt").write_text("mine")
    (out / "figures").mkdir()
    (out / "figures" / "old-run.png").write_bytes(b"png")
    train_run(tiny_config(epochs=1), out, force=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine"  # not binaryvae's: kept
    assert not (out / "figures" / "old-run.png").exists()  # binaryvae's figures: replaced
    assert len(metric_rows(out)) == 1  # the old run's two rows are gone


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"family": "nope"}, "unknown family"),
        ({"dataset": "nope"}, "unknown dataset"),
        ({"family": "autoencoder-gmm", "objective": "bernoulli-elbo"}, "not available"),
    ],
)
def test_bad_input_writes_nothing(tmp_path, changes, message):
    out = tmp_path / "never"
    with pytest.raises(BadInput, match=message):
        train_run(tiny_config(**changes), out, progress=False)
    assert not out.exists()


def test_nan_stops_with_epoch_and_batch_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    from binaryvae.models import VAE

    original = VAE.loss
    calls = {"n": 0}

    def poisoned(self, x, *args, **kwargs):
        terms = original(self, x, *args, **kwargs)
        calls["n"] += self.training
        if self.training and calls["n"] == 16 + 3:  # 16 batches per epoch: epoch 2, batch 3
            return terms._replace(surrogate=terms.surrogate + float("nan"))
        return terms

    monkeypatch.setattr(VAE, "loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at epoch 2, batch 3") as info:
        train_run(tiny_config(epochs=4), out, progress=False)
    assert "epoch 1" in str(info.value) and "last.pt" in str(info.value)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1
    assert [r["epoch"] for r in metric_rows(out)] == [1]
    assert not (out / "summary.json").exists()


def test_parse_families():
    assert parse_families("logistic, concrete:bernoulli-elbo") == [
        ("logistic", "elbo"),
        ("concrete", "bernoulli-elbo"),
    ]
    with pytest.raises(BadInput, match="unknown objective"):
        parse_families("logistic:likelihood")
    with pytest.raises(BadInput, match="twice"):
        parse_families("logistic,logistic:elbo")
    with pytest.raises(BadInput, match="no families"):
        parse_families(" , ")


def test_compare_trains_each_family_into_its_own_directory(tmp_path):
    out = tmp_path / "cmp"
    base = tiny_config(epochs=1)
    summaries = compare(parse_families("bernoulli-sfe,logistic:bernoulli-elbo,logistic"), base,
                        out, progress=False)  # fmt: skip
    assert list(summaries) == ["bernoulli-sfe", "logistic-bernoulli-elbo", "logistic-elbo"]
    assert [p.name for p in find_runs(out)] == sorted(summaries)
    listing = json.loads((out / "compare.json").read_text())
    assert listing["runs"] == list(summaries)
    configs = [TrainConfig.load(out / n / "config.json") for n in summaries]
    assert {(c.seed, c.hidden, c.latent_dim, c.dataset) for c in configs} == {
        (0, (16,), 4, "mnist-mini")
    }
    assert summaries["logistic-bernoulli-elbo"]["objective_label"].endswith("(not a bound)")


def test_compare_validates_every_family_before_writing(tmp_path):
    out = tmp_path / "cmp"
    with pytest.raises(BadInput, match="unknown family"):
        compare(parse_families("bernoulli-sfe,nope"), tiny_config(epochs=1), out, progress=False)
    assert not out.exists()


def test_evaluate_run_merges_into_the_summary(run3):
    out, _ = run3
    before = json.loads((out / "summary.json").read_text())
    summary = evaluate_run(out, iwae_k=10)
    assert summary["test_iwae_k10"] < summary[f"test_iwae_k{before['iwae_k']}"]
    stored = json.loads((out / "summary.json").read_text())
    # the default k's entry stays; the new k gets its own key
    assert stored["iwae_k"] == before["iwae_k"] and stored["test_iwae"] == before["test_iwae"]
    assert stored["test_iwae_k10"] == summary["test_iwae_k10"]
    assert summary["seconds_per_epoch"] > 0  # training numbers kept
    torch.set_num_threads(1)


def test_compare_resume_continues_finished_and_missing_runs(tmp_path):
    out = tmp_path / "cmp"
    compare(parse_families("bernoulli-sfe"), tiny_config(epochs=1), out, progress=False)
    with pytest.raises(BadInput, match="already exists"):
        compare(parse_families("bernoulli-sfe"), tiny_config(epochs=1), out, progress=False)
    summaries = compare(parse_families("bernoulli-sfe,gaussian-sigmoid"), tiny_config(epochs=2),
                        out, resume=True, progress=False)  # fmt: skip
    assert [r["epoch"] for r in metric_rows(out / "bernoulli-sfe")] == [1, 2]
    assert [r["epoch"] for r in metric_rows(out / "gaussian-sigmoid")] == [1, 2]
    assert set(summaries) == {"bernoulli-sfe", "gaussian-sigmoid"}


def test_compare_keeps_going_when_one_family_diverges(tmp_path, monkeypatch):
    from binaryvae.models import VAE
    from binaryvae.report import write_report

    original = VAE.loss

    def poisoned(self, x, *args, **kwargs):
        terms = original(self, x, *args, **kwargs)
        if self.family.name == "gaussian-sigmoid" and self.training:
            return terms._replace(surrogate=terms.surrogate * float("inf"))
        return terms

    monkeypatch.setattr(VAE, "loss", poisoned)
    out = tmp_path / "cmp"
    summaries = compare(parse_families("gaussian-sigmoid,bernoulli-sfe"), tiny_config(epochs=1),
                        out, progress=False)  # fmt: skip
    assert summaries["gaussian-sigmoid"]["status"] == "diverged"
    assert "epoch 1, batch 1" in summaries["gaussian-sigmoid"]["message"]
    assert "test_discrete_elbo" in summaries["bernoulli-sfe"]
    html = write_report(out, theory=False).read_text()
    assert "No summary.json (unfinished or stopped) for: gaussian-sigmoid" in html


def test_resume_can_extend_but_not_shorten(run3, tmp_path):
    import shutil

    out, _ = run3
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with pytest.raises(BadInput, match="would shorten"):
        train_run(tiny_config(family="steplogistic", epochs=2), copy, resume=True, progress=False)
    train_run(tiny_config(family="steplogistic", epochs=4), copy, resume=True, progress=False)
    assert [r["epoch"] for r in metric_rows(copy)] == [1, 2, 3, 4]


def test_compare_defaults_name_buildable_models():
    from binaryvae.config import COMPARE_FAMILIES
    from binaryvae.models import build_model

    pairs = parse_families(",".join(COMPARE_FAMILIES))
    assert ("steplogistic", "elbo") in pairs and ("concrete", "bernoulli-elbo") in pairs
    for family, objective in pairs:
        model = build_model(tiny_config(family=family, objective=objective), data_dim=784,
                            image_shape=(28, 28))  # fmt: skip
        assert model.latent_dim == 4


@pytest.mark.slow
def test_default_compare_one_epoch_end_to_end(tmp_path):
    """README command (1) with one epoch: every default family trains and the report renders."""
    from binaryvae.cli import main
    from binaryvae.config import COMPARE_FAMILIES

    out = tmp_path / "cmp"
    assert main(["compare", "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    # the eight runs, named as run_names promises (a family listed twice: family-objective)
    names = ["logistic-elbo", "logistic-bernoulli-elbo", "concrete", "steplogistic",
             "gaussian-sigmoid", "bernoulli-sfe", "autoencoder-gmm", "gaussian"]  # fmt: skip
    listing = json.loads((out / "compare.json").read_text())
    assert listing["runs"] == names and listing["families"] == list(COMPARE_FAMILIES)
    assert sorted(p.name for p in find_runs(out)) == sorted(names)
    table = (out / "report.md").read_text().splitlines()
    for name, spec in zip(names, COMPARE_FAMILIES, strict=True):
        family, _, objective = spec.partition(":")
        config = json.loads((out / name / "config.json").read_text())
        assert (config["family"], config["epochs"]) == (family, 1)
        assert config["objective"] == (objective or "elbo")
        assert [r["epoch"] for r in metric_rows(out / name)] == [1]
        summary = json.loads((out / name / "summary.json").read_text())
        row = next(line for line in table if line.startswith(f"| {name} | "))
        if summary["binary_latent"]:  # the table shows the run's own discrete ELBO
            assert f"| {summary['test_discrete_elbo']:.2f} |" in row
        assert f"| {summary['sample_fd']:.2f} |" in row
    assert "<img" in (out / "report.html").read_text()


@pytest.mark.parametrize(("family", "words"), [("gaussian", "continuous-latent"),
                                               ("steplogistic", "discrete model")])
def test_iwae_label_names_the_model_it_bounds(family, words):
    from binaryvae.models import build_model
    from binaryvae.runs.labels import summary_labels

    config = TrainConfig(family=family, hidden=(8,), latent_dim=2)
    model = build_model(config, data_dim=784, image_shape=(28, 28), data_kind="image")
    assert words in summary_labels(config, model)["labels"]["test_iwae"]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist-mini", "toy"])
def test_every_family_trains_through_the_training_code(dataset, tmp_path):
    """Every family goes through the one training path (train_run -> fit_epoch) on images and
    on the real-valued toy data, and its own test-set objective improves from epoch 1 to 3.

    Seeded CPU runs are deterministic, so this is not a statistical test; the margins seen are
    > 90 nats on mnist-mini and > 0.3 nats on toy data (8 dims). Marked slow (30 s of CPU): the
    default suite trains every family through `fit_epoch` in tests/test_replicas.py (single and
    stacked) and through `train_run` in the compares of tests/test_report.py and
    tests/test_pinned.py (seven families between them)."""
    from binaryvae.models import FAMILIES

    for family in FAMILIES:
        out = tmp_path / family
        config = tiny_config(dataset=dataset, family=family, epochs=3, hidden=(32,),
                             batch_size=100)  # fmt: skip
        train_run(config, out, progress=False)
        rows = metric_rows(out)
        key = next(k for k in ("test_relaxed_elbo", "test_elbo", "test_recon") if k in rows[0])
        assert rows[-1][key] > rows[0][key], (family, [r[key] for r in rows])


def test_compare_resume_accepts_the_older_autoencoder_spec(tmp_path):
    """compare.json used to list the autoencoder as autoencoder-gmm:elbo; it is now listed
    without an objective (it has no ELBO), and a directory written before still resumes."""
    out = tmp_path / "cmp"
    compare(parse_families("autoencoder-gmm"), tiny_config(epochs=1, gmm_components=2), out,
            progress=False)  # fmt: skip
    listing = json.loads((out / "compare.json").read_text())
    assert listing["families"] == ["autoencoder-gmm"]
    listing["families"] = ["autoencoder-gmm:elbo"]
    (out / "compare.json").write_text(json.dumps(listing))
    summaries = compare(parse_families("autoencoder-gmm"), tiny_config(epochs=1, gmm_components=2),
                        out, resume=True, progress=False)  # fmt: skip
    assert summaries["autoencoder-gmm"]["objective_label"].startswith("reconstruction only")


@pytest.mark.parametrize(("name", "content", "words"), [
    ("compare.json", None, "no compare.json there"),
    ("compare.json", "{not json", "compare.json: not valid JSON"),
    ("compare.json", '{"runs": ["a"], "families": ["logistic"]}', "field base is missing"),
    ("compare.json", '{"runs": [], "families": [], "base": {}, "seeds": 3}', "field seeds must be"),
    ("replicas.json", None, "no replicas.json there"),
    ("replicas.json", "[1, 2]", "replicas.json: must hold an object"),
    ("replicas.json", '{"seeds": [0, "1"], "config": {}}', "field seeds[1] must be an integer"),
    ("replicas.json", '{"seeds": [0, 1]}', "field config is missing"),
])  # fmt: skip
def test_the_listings_have_one_reader_naming_what_is_wrong(tmp_path, capsys, name, content,
                                                            words):  # fmt: skip
    """compare.json and replicas.json are read in one place each: a missing or malformed
    listing is one BadInput line naming the file and the field, and `--resume` exits 2 with it
    without writing anything."""
    from binaryvae.cli import main
    from binaryvae.runs.directory import read_compare_listing, read_replicas_listing

    out = tmp_path / "out"
    out.mkdir()
    if content is not None:
        (out / name).write_text(content)
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    reader = read_compare_listing if name == "compare.json" else read_replicas_listing
    with pytest.raises(BadInput) as e:
        reader(out)
    assert words in str(e.value) and str(out) in str(e.value) and "\n" not in str(e.value)
    command = ["compare", "--resume"] if name == "compare.json" else ["train", "--seeds", "0-1",
                                                                     "--resume"]  # fmt: skip
    assert main([*command, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and f"error: cannot resume {out}" in err and "\n" not in err
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before
