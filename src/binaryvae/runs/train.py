"""Training runs end to end: validate, build, train + evaluate per epoch, checkpoint, summarise.

`train_run` trains one model into one run directory (what ``binaryvae train`` calls);
`train_replicas` trains S seeds of one configuration at once, stacked
(`binaryvae.models.replicas`), each into its own run directory ``OUT/seed-<s>/`` with the full
run-directory contract (``binaryvae train --seeds``). Both go through one engine, so a replica
writes exactly the files, rows and checkpoints a single run with its seed writes.

Everything that can be wrong with the input is checked before anything is written. Every epoch
appends one row to metrics.jsonl and then replaces checkpoints/last.pt; ``resume=True`` reloads
the checkpoints, drops metric rows of epochs they do not cover, and runs the remaining epochs
exactly as an uninterrupted run would: every epoch draws its noise from generators seeded by
(seed, epoch) (`binaryvae.training.epoch_seed`), its data order and binarization likewise.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from binaryvae.config import MAX_SEED, TrainConfig, split_list
from binaryvae.errors import BadInput
from binaryvae.runs.build import Prepared, check_data_fingerprint, prepare, test_data
from binaryvae.runs.directory import RunDir
from binaryvae.runs.labels import objective_label, summary_labels
from binaryvae.runs.ownership import check_new_dir, claim_existing, claim_new
from binaryvae.storage import write_json_atomic
from binaryvae.training import (
    EpochProgress,
    epoch_seed,
    fit_epoch,
    kl_weight_at,
    load_checkpoint,
    load_state,
    make_optimizer,
    save_checkpoint,
    seed_everything,
    tune_allocator,
)
from binaryvae.training.checkpoint import CheckpointError, checkpoint_schema

__all__ = ["TrainingDiverged", "parse_seeds", "train_replicas", "train_run"]

MAX_REPLICAS = 256  # seeds per replica group: memory grows linearly with them


class TrainingDiverged(RuntimeError):
    """Training stopped on a NaN/inf; the message names epoch, batch and what was kept."""


def parse_seeds(spec: str | list[int] | tuple[int, ...]) -> list[int]:
    """``"0,1,2"``, ``"0-7"`` (inclusive) or a mix like ``"0-3,10"`` -> a list of distinct seeds.

    BadInput for anything else, an empty text or element (``"0,,1"``) included."""
    if not isinstance(spec, str):
        seeds = list(spec)
    else:
        seeds = []
        for part in split_list(spec, "--seeds"):
            lo, sep, hi = part.partition("-")
            try:
                if sep:
                    a, b = int(lo), int(hi)
                    if b < a:
                        raise BadInput(f"seed range {part!r} runs backwards")
                    if b - a >= MAX_REPLICAS:
                        raise BadInput(f"seed range {part!r} holds more than {MAX_REPLICAS} seeds")
                    seeds += range(a, b + 1)
                else:
                    seeds.append(int(part))
            except ValueError:
                raise BadInput(f"--seeds takes seeds like 0,1,2 or 0-7, got {spec!r}") from None
    if not seeds:
        raise BadInput("no seeds given")
    if len(set(seeds)) != len(seeds):
        raise BadInput(f"a seed is listed twice in {spec!r}")
    if len(seeds) > MAX_REPLICAS:
        raise BadInput(f"at most {MAX_REPLICAS} seeds per replica group, got {len(seeds)}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise BadInput(f"seeds must be integers in [0, {MAX_SEED}], got {s!r}")
    return seeds


@dataclass
class _Member:
    """One run of a group: its directory, its plain model, where it starts, how it ended."""

    run: RunDir
    prepared: Prepared
    test_x: torch.Tensor
    start_epoch: int = 0
    finalized: bool = False
    optimizer_state: dict | None = None  # the plain Adam state to continue from
    failure: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    gradient: list[dict[str, Any]] = field(default_factory=list)  # this epoch's diagnostics

    @property
    def config(self) -> TrainConfig:
        return self.prepared.config

    @property
    def model(self) -> torch.nn.Module:
        return self.prepared.model


# ----------------------------------------------------------------------------- public drivers
def train_run(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    label: str = "",
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Train ``config`` into run directory ``out`` and return its summary (also in summary.json).

    ``resume``: continue ``out`` from checkpoints/last.pt; ``config`` may differ from the stored
    one only in `binaryvae.config.RESUMABLE_FIELDS`. ``force``: replace an existing run
    directory that binaryvae wrote (`binaryvae.runs.ownership`). The directory is locked for the
    whole call. Raises BadInput (nothing written) for bad input or a directory in use,
    `TrainingDiverged` on NaN/inf, `binaryvae.storage.StorageError` when the disk refuses a
    write (the last good checkpoint intact).
    """
    stream = sys.stderr if stream is None else stream
    run = RunDir(out)
    with ExitStack() as stack:
        if resume:
            stack.enter_context(claim_existing(run.path, "resume"))
            config = _resumed_config(run, config)
            # validates everything (the data too) before the first byte is written
            prepared = prepare(config, where=str(run.path))
        else:
            check_new_dir(run.path, force)
            prepared = prepare(config)
            claim = stack.enter_context(claim_new(run.path, force=force, kind="run"))
        member = _open_member(run, prepared, resume)
        _write_member(member)
        if not resume:
            claim.commit()  # the run exists from here on: a later failure keeps what it wrote
        _train_members([member], stacked=False, progress=progress, label=label, stream=stream)
        if member.failure:
            raise TrainingDiverged(member.failure)
        return member.summary


def train_replicas(
    config: TrainConfig,
    seeds: list[int] | str,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    label: str = "",
    stream: TextIO | None = None,
) -> dict[int, dict[str, Any]]:
    """Train ``config`` once per seed, all seeds at once, into ``out/seed-<s>/``.

    The replicas are stacked into one model (`binaryvae.models.replicas.stack_models`): batched
    matrix products, one Adam over the stacked parameters (elementwise, so it equals S separate
    optimizers). Each replica has its own data order, noise and dynamic binarization, so replica
    r's run directory holds what ``train_run`` with seed r would write (to float32 round-off).
    A replica that turns NaN/inf stops alone (its last good checkpoint and metrics kept); the
    others go on. ``out/replicas.json`` records the configuration and the seeds.

    ``resume``: continue every ``seed-<s>`` from its checkpoint (seeds may be added, not
    dropped; options as in `train_run`). Returns ``{seed: summary}``, with
    ``{"status": "diverged", "message": ...}`` for a replica that stopped.
    """
    stream = sys.stderr if stream is None else stream
    seeds = parse_seeds(seeds)
    out = Path(out)
    configs = [dataclasses.replace(config, seed=s) for s in seeds]
    runs = [RunDir(out / f"seed-{s}") for s in seeds]
    listing = {"seeds": seeds, "config": dataclasses.replace(config, seed=seeds[0]).to_dict()}
    with ExitStack() as stack:
        if resume:
            stack.enter_context(claim_existing(out, "resume"))
            _check_group_resume(out, listing, config)
        else:
            check_new_dir(out, force)
        first = prepare(configs[0], replicas=len(seeds))  # the whole group's memory checked
        dataset = first.dataset
        if not resume:
            group = stack.enter_context(claim_new(out, force=force, kind="replicas"))
        opened = []
        for cfg, run in zip(configs, runs, strict=True):
            again = resume and run.config_path.is_file()
            if again:
                stack.enter_context(claim_existing(run.path, "resume"))
                cfg = _resumed_config(run, cfg)
            else:
                stack.enter_context(claim_new(run.path, force=force, kind="run")).commit()
            if cfg == first.config:
                prepared = first
                check_data_fingerprint(cfg, dataset, str(run.path))  # the stored one, on resume
            else:
                prepared = prepare(cfg, dataset=dataset, where=str(run.path))
            opened.append((run, prepared, again))
        # every replica's config, data and checkpoint checked before any of their files is
        # rewritten
        members = [_open_member(run, prepared, again) for run, prepared, again in opened]
        _check_alike(members)
        for m in members:
            _write_member(m)
        write_json_atomic(out / "replicas.json", listing)
        if not resume:
            group.commit()
        label = label or f"seeds {_seed_text(seeds)}"
        _train_members(members, stacked=True, progress=progress, label=label, stream=stream)
    return {
        m.config.seed: (
            m.summary if not m.failure else {"status": "diverged", "message": m.failure}
        )
        for m in members
    }


# ----------------------------------------------------------------------------- set-up
def _resumed_config(run: RunDir, config: TrainConfig) -> TrainConfig:
    """The config a resumed run continues: the stored one, with the fields resume may change
    (`binaryvae.config.RESUMABLE_FIELDS`) taken from ``config``; BadInput for any other change.
    The recorded data fingerprint is the stored one (`binaryvae.config.RECORDED_FIELDS`):
    `prepare` then refuses other data, or records them for a run that has none."""
    if not run.config_path.is_file():
        raise BadInput(
            f"cannot resume {run.path}: no config.json there (start it without --resume)"
        )
    stored = run.read_config()
    config.check_resumable(stored, str(run.path))
    return dataclasses.replace(
        config, data_fingerprint=stored.data_fingerprint, data_source=stored.data_source
    )


def _check_group_resume(out: Path, listing: dict[str, Any], config: TrainConfig) -> None:
    from binaryvae.runs.directory import read_replicas_listing

    try:
        recorded = read_replicas_listing(out)
    except BadInput as e:
        raise BadInput(f"cannot resume {e}") from None
    old_seeds = recorded["seeds"]
    try:
        stored = TrainConfig.from_dict(recorded["config"])
    except BadInput as e:
        raise BadInput(f"cannot resume {out}: replicas.json: {e}") from None
    dropped = [s for s in old_seeds if s not in listing["seeds"]]
    if dropped:
        raise BadInput(
            f"--resume continues the replicas of {out}; it cannot drop seeds "
            f"{_seed_text(dropped)} (seeds may only be added)"
        )
    dataclasses.replace(config, seed=stored.seed).check_resumable(stored, str(out))


def _open_member(run: RunDir, prepared: Prepared, resume: bool) -> _Member:
    """Load the run's checkpoint (resume), checked against the run's model and optimizer
    (`binaryvae.training.checkpoint.checkpoint_schema`), and check its metrics.jsonl; nothing
    is written yet (`_write_member` does)."""
    member = _Member(run, prepared, test_data(prepared))
    c = prepared.config
    if resume and run.checkpoint_path.is_file():
        schema = checkpoint_schema(c, prepared.model, source=str(run.config_path))
        state = load_checkpoint(run.checkpoint_path, map_location=prepared.device, schema=schema)
        load_state(prepared.model, state["model"], run.checkpoint_path)
        member.optimizer_state = state.get("optimizer")
        member.start_epoch = int(state["epoch"])
        member.finalized = bool(state.get("extra", {}).get("finalized", False))
        if member.start_epoch > c.epochs:
            raise BadInput(
                f"{run.path} already has {member.start_epoch} epochs; --epochs {c.epochs} would "
                "shorten it (give at least that many)"
            )
    if member.start_epoch < c.epochs:
        member.finalized = False  # new epochs: autoencoder-gmm refits its mixture afterwards
    run.read_metrics()  # BadInput naming the file now, before anything is written
    return member


def _check_alike(members: list[_Member]) -> None:
    """CheckpointError unless the replicas' Adam states cover the same parameters: each is
    checked alone against its schema, stacking them needs them alike."""
    held = [(m, frozenset(m.optimizer_state["state"])) for m in members if m.optimizer_state]
    for m, keys in held[1:]:
        if keys != held[0][1]:
            raise CheckpointError(
                f"{m.run.checkpoint_path}: optimizer.state covers other parameters than "
                f"{held[0][0].run.checkpoint_path}'s; the replicas cannot be resumed together"
            )


def _write_member(member: _Member) -> None:
    """Write the member's config and trim its metrics to the epochs its checkpoint covers."""
    member.run.write_config(member.config)
    member.run.keep_metrics_through(member.start_epoch)


def _seed_text(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


# ----------------------------------------------------------------------------- the engine
def _train_members(
    members: list[_Member], *, stacked: bool, progress: bool, label: str, stream: TextIO
) -> None:
    """Train every member to its ``epochs``, then finalize and summarise each.

    Members that start at the same epoch train together (one stacked model when ``stacked``);
    groups that start at different epochs (a resumed group interrupted between two replicas'
    checkpoints) train one after the other.
    """
    tune_allocator()
    starts = sorted({m.start_epoch for m in members})
    for start in starts:
        group = [m for m in members if m.start_epoch == start and start < m.config.epochs]
        if group:
            _fit_group(group, stacked=stacked, progress=progress, label=label, stream=stream)
    for m in members:
        if not m.failure:
            _finish(m)


class _Trainer:
    """The model and optimizer that train a group: the member's own (one plain model), or a
    stacked model of the live members' plain models."""

    def __init__(self, members: list[_Member], stacked: bool):
        from binaryvae.models.replicas import stack_models, stack_optimizer_state

        self.members = members
        self.stacked = stacked
        c = members[0].config
        if stacked:
            self.model = stack_models([m.model for m in members])
        else:
            self.model = members[0].model
        self.optimizer = make_optimizer(self.model, c.lr)
        states = [m.optimizer_state for m in members]
        if all(s is not None for s in states):
            state = stack_optimizer_state(states, self.model) if stacked else states[0]
            load_state(self.optimizer, state, members[0].run.checkpoint_path)

    def generator(self, epoch: int):
        device = self.members[0].prepared.device
        gens = [
            torch.Generator(device=device).manual_seed(epoch_seed(m.config.seed, epoch, "train"))
            for m in self.members
        ]
        if not self.stacked:
            return gens[0]
        from binaryvae.models.replicas import ReplicaGenerator

        return ReplicaGenerator(gens)

    def batches(self, loaders, epoch: int):
        if not self.stacked:
            yield from loaders[0].epoch(epoch)
            return
        for xs in zip(*[b.epoch(epoch) for b in loaders], strict=True):
            yield torch.stack(xs)  # [S, B, D]

    def sync(self, optimizer: bool = True, skip: list[bool] | None = None) -> None:
        """Copy each live replica's parameters (and Adam state) back to its plain model."""
        if not self.stacked:
            if optimizer:
                for m in self.members:
                    m.optimizer_state = self.optimizer.state_dict()
            return
        from binaryvae.models.replicas import (
            replica_layouts,
            unstack_optimizer_state,
            unstack_state,
        )

        layouts, state = replica_layouts(self.model), self.model.state_dict()
        opt = self.optimizer.state_dict() if optimizer else None
        s = len(self.members)
        for r, m in enumerate(self.members):
            if m.failure is None and not (skip and skip[r]):
                m.model.load_state_dict(unstack_state(state, r, layouts, s))
                if optimizer:
                    m.optimizer_state = unstack_optimizer_state(opt, r, self.model)


def _fit_group(
    members: list[_Member], *, stacked: bool, progress: bool, label: str, stream: TextIO
) -> None:
    from binaryvae.data import EpochBatches

    c = members[0].config
    start = members[0].start_epoch
    loaders = [
        EpochBatches(m.prepared.dataset.train_x, batch_size=c.batch_size, binarize=c.binarize,
                     seed=m.config.seed, device=m.prepared.device)
        for m in members
    ]  # fmt: skip
    trainer = _Trainer(members, stacked)
    for epoch in range(start + 1, c.epochs + 1):
        seed_everything(epoch_seed(members[0].config.seed, epoch, "train"))
        bar = EpochProgress(
            epoch,
            c.epochs,
            loaders[0].num_examples,
            label=label,
            stream=stream,
            enabled=progress,
            value_name=_value_name(c, members[0].prepared.model),
        )
        kl_weight = kl_weight_at(c.kl_weight, c.kl_warmup_epochs, epoch)
        on_step = _gradient_hook(trainer, members, epoch, len(loaders[0]))
        if stacked:
            stats = fit_epoch(
                trainer.model,
                trainer.optimizer,
                trainer.batches(loaders, epoch),
                epoch=epoch,
                objective=c.objective,
                kl_weight=kl_weight,
                generator=trainer.generator(epoch),
                replicas=len(members),
                precision=c.precision,
                progress=bar,
                on_step=on_step,
            )
        else:
            single = _fit_plain(trainer, loaders, epoch, kl_weight, bar, members[0], on_step)
            if single is None:  # the run stopped: its failure is recorded
                bar.close("stopped")
                return
            stats = [single]
        for m, st in zip(members, stats, strict=True):
            if st.failure is not None:
                m.failure = _stop_message(m, st.failure, epoch)
                print(f"{m.run.path}: stopped: {m.failure}", file=stream, flush=True)
        trainer.sync()
        rows = [
            _end_epoch(m, st, epoch, kl_weight)
            for m, st in zip(members, stats, strict=True)
            if m.failure is None
        ]
        bar.close(_epoch_line(rows))
        live = [i for i, m in enumerate(members) if m.failure is None]
        if not live:
            return
        if len(live) < len(members):  # drop the stopped replicas: restack the others
            members = [members[i] for i in live]
            loaders = [loaders[i] for i in live]
            trainer = _Trainer(members, stacked)


def _gradient_hook(trainer: _Trainer, members: list[_Member], epoch: int, steps_per_epoch: int):
    """The `fit_epoch` hook that measures gradient variance and bias every ``grad_every``
    training steps (`binaryvae.diagnostics.gradient_diagnostics`), on each live member's
    plain model, with its own noise (never the training's)."""
    c = members[0].config
    if not c.grad_every or not members[0].model.family.has_likelihood:
        return None
    from binaryvae.diagnostics import gradient_diagnostics

    def hook(batch: int, stopped: torch.Tensor) -> None:
        step = (epoch - 1) * steps_per_epoch + batch
        if step % c.grad_every:
            return
        trainer.sync(optimizer=False, skip=stopped.tolist())
        for m, dead in zip(members, stopped.tolist(), strict=False):
            if dead or m.failure is not None:
                continue
            g = torch.Generator(device=m.prepared.device)
            g.manual_seed(epoch_seed(m.config.seed, step, "gradient"))
            x = m.test_x[: c.batch_size]
            record = gradient_diagnostics(
                m.model, x, objective=c.objective, samples=c.grad_samples, generator=g
            )
            m.gradient.append({"step": step, **record})

    return hook


def _fit_plain(
    trainer: _Trainer, loaders, epoch: int, kl_weight: float, bar, member: _Member, on_step=None
):
    """One epoch of a single run: `fit_epoch` raising on NaN/inf, turned into a member failure
    (returns None then)."""
    from binaryvae.training import NonFiniteLoss

    c = member.config
    try:
        return fit_epoch(
            trainer.model,
            trainer.optimizer,
            trainer.batches(loaders, epoch),
            epoch=epoch,
            objective=c.objective,
            kl_weight=kl_weight,
            generator=trainer.generator(epoch),
            precision=c.precision,
            progress=bar,
            on_step=on_step,
        )
    except NonFiniteLoss as e:
        member.failure = _stop_message(member, e, epoch)
        return None


def _stop_message(m: _Member, error: Exception, epoch: int) -> str:
    if epoch > 1:
        kept = (
            f"last good checkpoint {m.run.checkpoint_path} (epoch {epoch - 1}) and the "
            f"metrics of epochs 1-{epoch - 1} in {m.run.metrics_path}"
        )
    else:
        kept = "nothing trained (it failed in the first epoch)"
    return f"{error}; training stopped. Kept: {kept}. Try a smaller --lr."


def _end_epoch(m: _Member, stats, epoch: int, kl_weight: float) -> dict[str, Any]:
    """Evaluate the member's model, append its metrics row, replace its checkpoint; the row."""
    from binaryvae.evaluation import evaluate_epoch

    c = m.config
    t0 = time.perf_counter()
    last = epoch == c.epochs
    iwae = c.eval_iwae_k if c.eval_iwae_every and (epoch % c.eval_iwae_every == 0 or last) else 0
    metrics = evaluate_epoch(
        m.model,
        m.test_x,
        samples=c.eval_samples,
        seed=epoch_seed(c.seed, epoch, "eval"),
        iwae_k=iwae,
    )
    eval_seconds = time.perf_counter() - t0
    row = {
        "epoch": epoch,
        "objective": c.objective,
        "objective_label": objective_label(c, m.model)[0],
        "family": c.family,
        "kl_weight": kl_weight,
        "train_loss": stats.train_loss,
        "train_elbo": stats.train_elbo,
        "train_recon": stats.train_recon,
        "train_kl": stats.train_kl,
        **metrics,
        "train_seconds": stats.train_seconds,
        "eval_seconds": eval_seconds,
    }
    if m.gradient:
        row["gradient"], m.gradient = m.gradient, []
    m.run.append_metrics(row)
    save_checkpoint(
        m.run.checkpoint_path,
        model_state=m.model.state_dict(),
        optimizer_state=m.optimizer_state,
        epoch=epoch,
        config=c,
    )
    return row


def _finish(m: _Member) -> None:
    """Fit what is fitted after training (autoencoder-gmm's mixture), checkpoint it, and write
    the summary."""
    from binaryvae.evaluation import evaluate_summary
    from binaryvae.training.classifier import feature_network

    c, model, ds = m.config, m.model, m.prepared.dataset
    if not m.finalized:
        seed_everything(epoch_seed(c.seed, 0, "finalize"))
        model.finalize(_finalize_data(ds.train_x, c.binarize).to(m.prepared.device))
        save_checkpoint(
            m.run.checkpoint_path,
            model_state=model.state_dict(),
            optimizer_state=m.optimizer_state,
            epoch=c.epochs,
            extra={"finalized": True},
            config=c,
        )
    t0 = time.perf_counter()
    summary = dict(
        evaluate_summary(
            model,
            m.test_x,
            features=feature_network(ds),
            seed=epoch_seed(c.seed, 0, "summary"),
        )
    )
    rows = m.run.read_metrics()
    summary.update(summary_labels(c, model))
    summary.update(
        epochs=len(rows),
        seconds_per_epoch=sum(r["train_seconds"] for r in rows) / max(len(rows), 1),
        eval_seconds_per_epoch=sum(r["eval_seconds"] for r in rows) / max(len(rows), 1),
        summary_seconds=time.perf_counter() - t0,
        threads=m.prepared.threads,
        device=str(m.prepared.device),
        dataset_label=getattr(ds, "label", c.dataset),
    )
    m.run.write_summary(summary)
    m.summary = summary


def _finalize_data(train_x: torch.Tensor, binarize: str) -> torch.Tensor:
    """Training images for `VAE.finalize` (the autoencoder's mixture fit): thresholded when
    the run trained on thresholded pixels; grey levels otherwise (dynamic binarization's
    expectation)."""
    if binarize == "threshold":
        from binaryvae.data import to_float

        return to_float(train_x, "threshold")
    return train_x


def _value_name(config: TrainConfig, model: Any) -> str:
    """What the training value of an epoch line is: the objective trained on, by its name."""
    from binaryvae.evaluation.summary import has_likelihood

    if not has_likelihood(model):
        return "train recon"  # the autoencoder's loss: log p(x | code), no KL
    return f"train {config.objective}"


def _epoch_line(rows: list[dict[str, Any]]) -> str:
    """The tail of the one-line epoch summary: the test bounds that exist for this family (the
    mean over the replicas of a group)."""
    if not rows:
        return "every replica stopped"
    parts = []
    for key, short in (
        ("test_relaxed_elbo", "relaxed"),  # families with a relaxation (Family.relaxed)
        ("test_elbo", "ELBO"),  # the family's own ELBO where it has none
        ("test_discrete_elbo", "discrete"),
        ("test_log_px_exact", "log p(x)"),
    ):
        values = [r.get(key) for r in rows]
        if all(isinstance(v, int | float) for v in values):
            parts.append(f"{short} {sum(values) / len(values):.2f}")
    recon = [r.get("test_recon") for r in rows]
    if not parts and all(isinstance(v, int | float) for v in recon):  # the autoencoder: no bound
        parts.append(f"recon {sum(recon) / len(recon):.2f}")
    parts.append(f"{rows[0]['train_seconds']:.1f}s+{sum(r['eval_seconds'] for r in rows):.1f}s")
    head = "test " if len(rows) == 1 else f"test, mean of {len(rows)} replicas: "
    return head + "  ".join(parts)
