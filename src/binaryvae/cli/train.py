"""`binaryvae train`: one training run into a run directory (then its figures and report)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from binaryvae.cli._common import (
    add_run_options,
    hidden_sizes,
    on_off,
    path_option,
    print_summary,
)
from binaryvae.config import (
    ACTIVATIONS,
    BINARIZE_MODES,
    DECODER_BIASES,
    DECODER_INPUTS,
    DECODER_SAMPLES,
    DECODERS,
    ENCODER_INPUTS,
    INITS,
    NETWORKS,
    OBJECTIVES,
    OPTIMIZERS,
    PRIORS,
    PROTOCOLS,
    TrainConfig,
)
from binaryvae.errors import BadInput

__all__ = ["add_parser", "config_from_args", "run_train"]

# command-line option -> TrainConfig field, for options that map one to one
_FIELDS = {
    "dataset": "dataset",
    "family": "family",
    "objective": "objective",
    "latent_dim": "latent_dim",
    "epochs": "epochs",
    "steps": "steps",
    "eval_every_steps": "eval_every_steps",
    "seed": "seed",
    "batch_size": "batch_size",
    "lr": "lr",
    "beta": "beta",
    "binarize": "binarize",
    "threads": "threads",
    "device": "device",
    "data_dir": "data_dir",
    "kl_weight": "kl_weight",
    "kl_warmup": "kl_warmup_epochs",
    "prior": "prior",
    "decoder": "decoder",
    "network": "network",
    "activation": "activation",
    "eval_samples": "eval_samples",
    "gmm_components": "gmm_components",
    "precision": "precision",
    "eval_iwae_every": "eval_iwae_every",
    "eval_iwae_k": "eval_iwae_k",
    "grad_every": "grad_every",
    "grad_samples": "grad_samples",
    # the reference protocol's options (issue 28) and its presets
    "protocol": "protocol",
    "encoder_input": "encoder_input",
    "decoder_input": "decoder_input",
    "decoder_bias": "decoder_bias",
    "init": "init",
    "prior_sgd_lr": "prior_sgd_lr",
    "decoder_sample": "decoder_sample",
    "adam_eps": "adam_eps",
    "validation": "validation",
    "summary_iwae_k": "summary_iwae_k",
    "grad_var_param_ema": "grad_var_param_ema",
    # what is recorded beside training (issue 27)
    "track": "track",
    "track_images": "track_images",
    "tensorboard": "tensorboard",
    # the training interventions (issue 28)
    "optimizer": "optimizer",
    "momentum": "momentum",
    "lr_decay_epoch": "lr_decay_epoch",
    "lr_decay": "lr_decay",
    "logit_clamp": "logit_clamp",
    "summary_train_images": "summary_train_images",
    "summary_grad_samples": "summary_grad_samples",
    "summary_grad_images": "summary_grad_images",
    "summary_fd_samples": "summary_fd_samples",
}
# what an option takes to mean "none" where the field may be null (argparse's None is "not
# given")
_NONE = "none"


def _float_or_none(text: str):
    """A float, or the word ``none`` (the field's null)."""
    if text.strip().lower() == _NONE:
        return _NONE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _int_or_none(text: str):
    """An integer, or the word ``none`` (the field's null)."""
    if text.strip().lower() == _NONE:
        return _NONE
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one model into a run directory",
        description="Train one model and write a run directory: config.json, metrics.jsonl (one "
        "line per epoch), checkpoints/last.pt, summary.json, figures/ and report.html. Options "
        "not given come from --config FILE, else from the defaults.",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="a config.json (e.g. of an earlier run); options given here override it",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run directory to create")
    p.add_argument(
        "--dataset", default=None, help="mnist-mini (default), mnist, fashion-mnist, toy"
    )
    p.add_argument(
        "--family",
        default=None,
        help="posterior family, e.g. steplogistic (default), logistic, concrete, "
        "gaussian-sigmoid, bernoulli-sfe, autoencoder-gmm; bernoulli-<estimator> for every "
        "registered estimator (disarm, vimco, arms, gumbel-rao, reinmax, ..., and those of "
        "installed packages: docs/extending.md)",
    )
    p.add_argument(
        "--objective",
        default=None,
        choices=OBJECTIVES,
        help="elbo (the family's own bound, default) or bernoulli-elbo (not a bound)",
    )
    p.add_argument(
        "--latent-dim", type=int, default=None, metavar="N", help="latent bits (default 8)"
    )
    p.add_argument(
        "--epochs", type=int, default=None, metavar="N", help="default 10 (unless --steps)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="stop after N optimizer steps instead of a number of epochs: the run trains "
        "ceil(N / batches per epoch) epochs, the last one cut (not with --epochs)",
    )
    p.add_argument(
        "--eval-every-steps",
        type=int,
        default=None,
        metavar="M",
        help="also evaluate (a metrics row and a checkpoint) every M optimizer steps",
    )
    p.add_argument("--seed", type=int, default=None, metavar="N", help="default 0")
    p.add_argument(
        "--seeds",
        default=None,
        metavar="0-7",
        help="train one replica per seed (0,1,2 or 0-7) at once, stacked into batched matrix "
        "products, each into OUT/seed-<s>/ (an ordinary run directory)",
    )
    p.add_argument(
        "--hidden",
        type=str,
        default=None,
        metavar="512,256,128",
        help="hidden layer sizes of the encoder (decoder mirrored)",
    )
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="default 128")
    p.add_argument(
        "--lr", type=float, default=None, metavar="F", help="Adam step size (default 1e-3)"
    )
    p.add_argument(
        "--beta",
        type=float,
        default=None,
        metavar="F",
        help="inverse temperature of sigmoid(beta*z) (default 10)",
    )
    p.add_argument(
        "--binarize",
        default=None,
        choices=BINARIZE_MODES,
        help="pixels: grey levels (none, default), threshold at 0.5, dynamic Bernoulli",
    )
    p.add_argument(
        "--kl-weight",
        type=float,
        default=None,
        metavar="F",
        help="weight of the KL term (1 = a bound; anything else is labelled not a bound)",
    )
    p.add_argument(
        "--kl-warmup",
        type=int,
        default=None,
        metavar="EPOCHS",
        help="linear KL warm-up from 0 over this many epochs (default 0)",
    )
    p.add_argument("--prior", default=None, choices=PRIORS, help="default fixed")
    p.add_argument(
        "--decoder",
        default=None,
        choices=DECODERS,
        help="likelihood p(x|code) (default auto)",
    )
    p.add_argument("--network", default=None, choices=NETWORKS, help="default mlp")
    p.add_argument("--activation", default=None, choices=ACTIVATIONS)
    p.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        metavar="K",
        help="posterior samples per test image for the per-epoch bounds (default 1)",
    )
    p.add_argument(
        "--eval-iwae-every",
        type=int,
        default=None,
        metavar="E",
        help="every E epochs (and after the last) the test IWAE-K bound, metrics key "
        "test_iwae_k<K> (default 0: never)",
    )
    p.add_argument(
        "--eval-iwae-k", type=int, default=None, metavar="K", help="K of --eval-iwae-every (100)"
    )
    p.add_argument(
        "--grad-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="gradient diagnostics every STEPS training steps: variance of the encoder gradient "
        "estimate and, up to 12 bits, its bias against the exact gradient (default 0: off)",
    )
    p.add_argument(
        "--grad-samples",
        type=int,
        default=None,
        metavar="K",
        help="gradient estimates per diagnostic (default 50)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        metavar="K",
        help="K samples per image of the K-sample estimators (extra.samples): bernoulli-disarm "
        "(K/2 antithetic pairs, K even), -reinforce-loo, -arms, -vimco, -rodeo (default 2)",
    )
    p.add_argument(
        "--gmm-components",
        type=int,
        default=None,
        metavar="K",
        help="autoencoder-gmm: mixture components (default 20)",
    )
    p.add_argument(
        "--track",
        default=None,
        metavar="exact,logits,flips",
        help="trackers at every metrics row, on the first --track-images test images: exact "
        "(exact discrete ELBO, log p(x) and gap by enumeration; up to 16 bits), logits "
        "(|logit| quantiles 0.5, 0.9, 0.99), flips (fraction of bits whose most probable value "
        "changed since the previous row, and of saturated ones, |logit| > 10); metrics keys "
        "track_* (default none)",
    )
    p.add_argument(
        "--track-images",
        type=int,
        default=None,
        metavar="N",
        help="test images the trackers use: the first N, binarized once with a fixed seed, the "
        "same for every seed (default 1000; all of them when the test split has fewer)",
    )
    p.add_argument(
        "--summary-train-images",
        type=int,
        default=None,
        metavar="N",
        help="also write summary.json's train_discrete_elbo: the discrete ELBO (1 sample per "
        "image) of the first N training images (the train part under --validation), binarized "
        "once with a fixed seed; the DisARM paper's train ELBO (default 0: off)",
    )
    p.add_argument(
        "--summary-fd-samples",
        type=_int_or_none,
        default=None,
        metavar="N",
        help="summary.json's sample_fd from N generated images (0: not computed; default: as "
        "many as test images); it changes no other number",
    )
    p.add_argument(
        "--summary-grad-samples",
        type=int,
        default=None,
        metavar="K",
        help="also write summary.json's final_grad_* after training: K estimates (at least 3) "
        "of the trained objective's encoder gradient against the exact discrete-ELBO gradient, "
        "its bias and the calibrated bias test (binaryvae.diagnostics.final; binary families, "
        "at most 12 bits; noise from a generator of its own; default 0: off)",
    )
    p.add_argument(
        "--summary-grad-images",
        type=int,
        default=None,
        metavar="N",
        help="test images --summary-grad-samples measures on: the first N (default 128)",
    )
    _add_protocol_options(p)
    _add_intervention_options(p)
    add_run_options(p)
    p.set_defaults(func=run_train)


def _add_protocol_options(p: argparse.ArgumentParser) -> None:
    """The reference protocol's options (issue 28) and its presets."""
    g = p.add_argument_group(
        "reference protocol",
        "the DisARM/ARMS papers' public code as options (each alone), and presets setting them "
        "all; options given beside --protocol override it (config.json's protocol_overrides)",
    )
    g.add_argument(
        "--protocol",
        default=None,
        choices=tuple(PROTOCOLS),
        help="preset: fashion-mnist, dynamic binarization, --validation 10000, batch 50, Adam "
        "1e-4 (eps 1e-7), 200 bits, learned prior by SGD 1e-2, centred encoder input, signed "
        "decoder input, data-mean decoder bias, glorot init, independent decoder sample and the "
        "ELBO learning signal (where the family takes them), summary IWAE k=100, "
        "grad_var_param_ema; nonlinear: --hidden 200,200 LeakyReLU(0.3); linear: no hidden layer; "
        "-mnist: the same on MNIST",
    )
    g.add_argument("--encoder-input", default=None, choices=ENCODER_INPUTS,
                   help="raw x (default) or centred: x - (training mean)")
    g.add_argument("--decoder-input", default=None, choices=DECODER_INPUTS,
                   help="bits b in {0,1} (default) or signed: 2b - 1")
    g.add_argument("--decoder-bias", default=None, choices=DECODER_BIASES,
                   help="decoder output bias at init: default, or data-mean: "
                   "logit(clip(training mean, 0.001, 0.999))")
    g.add_argument("--init", default=None, choices=INITS,
                   help="weights at init: torch (default) or glorot (uniform, zero biases)")
    g.add_argument("--prior-sgd-lr", type=_float_or_none, default=None, metavar="F",
                   help="train the learned prior's logits by SGD at F (default none: in Adam)")
    g.add_argument("--decoder-sample", default=None, choices=DECODER_SAMPLES,
                   help="decoder/prior gradients from the estimator's samples (shared, default) "
                   "or an independent third sample (bernoulli-disarm, -arm, -reinforce-loo)")
    g.add_argument("--adam-eps", type=float, default=None, metavar="F",
                   help="Adam's epsilon (default 1e-8)")
    g.add_argument("--validation", type=int, default=None, metavar="N",
                   help="hold out the last N training images as the validation split (default 0)")
    g.add_argument("--summary-iwae-k", type=_int_or_none, default=None, metavar="K",
                   help="k of summary.json's IWAE (default none: 100, or 1,000 up to 12 bits)")
    g.add_argument("--grad-var-param-ema", type=on_off, default=None, metavar="on|off",
                   help="log the reference's gradient variance, grad_var_param_ema (an EMA of "
                   "the encoder parameter gradients' moments; default off)")


def _add_intervention_options(p: argparse.ArgumentParser) -> None:
    """The training interventions (issue 28): optimizer, learning-rate decay, logit clamp."""
    g = p.add_argument_group(
        "training interventions",
        "change one thing about the optimization (each default: as without the option)",
    )
    g.add_argument("--optimizer", default=None, choices=OPTIMIZERS,
                   help="adam (default) or sgd (torch.optim.SGD; --lr is its step size)")
    g.add_argument("--momentum", type=float, default=None, metavar="F",
                   help="SGD's heavy-ball momentum in [0, 1) (default 0; --optimizer sgd only)")
    g.add_argument("--lr-decay-epoch", type=_int_or_none, default=None, metavar="E",
                   help="multiply the learning rate by --lr-decay once, after epoch E "
                   "(default none)")
    g.add_argument("--lr-decay", type=_float_or_none, default=None, metavar="F",
                   help="the factor of --lr-decay-epoch, in (0, 1] (e.g. 0.1)")
    g.add_argument("--logit-clamp", type=_float_or_none, default=None, metavar="C",
                   help="clamp the encoder's bit logits to [-C, C] in the forward pass, zero "
                   "gradient outside (default none; families whose encoder outputs logits)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """--config FILE (or the defaults) overridden by the options given on the command line.

    With --resume the base is the run's own config.json; `binaryvae.runs.train_run` then
    refuses any change outside `binaryvae.config.RESUMABLE_FIELDS`.
    """
    if getattr(args, "resume", False):
        out = Path(args.out)
        if getattr(args, "seeds", None) is not None:
            return _apply(_recorded_group_config(out), args)
        stored = out / "config.json"
        if not os.path.lexists(stored):
            raise BadInput(f"cannot resume {args.out}: no config.json there")
        return _apply(TrainConfig.load(stored).to_dict(), args)
    base: dict[str, Any] = (
        TrainConfig.load(args.config).to_dict() if args.config else TrainConfig().to_dict()
    )
    return _apply(base, args)


def _recorded_group_config(out: Path) -> dict[str, Any]:
    """The configuration recorded in a replica group's replicas.json (what --resume continues)."""
    from binaryvae.runs.directory import read_replicas_listing

    try:
        return read_replicas_listing(out)["config"]
    except BadInput as e:
        raise BadInput(f"cannot resume {e}") from None


def one_budget(base: dict[str, Any], given: dict[str, Any]) -> None:
    """``--epochs`` or ``--steps`` given on the command line replaces the budget of ``base``
    (a --config file, a stored run, a recorded grid): the other one is dropped. Both given is
    left for `TrainConfig` to refuse."""
    for mine, other in (("epochs", "steps"), ("steps", "epochs")):
        if given.get(mine) is not None and given.get(other) is None:
            base[other] = None


def _apply(base: dict[str, Any], args: argparse.Namespace) -> TrainConfig:
    """``base`` with the options given on top. With ``--protocol`` the preset's values come
    between the two (`TrainConfig.follow_protocol`); a base that names a protocol keeps its
    overrides and follows its preset elsewhere (a family given here gets the preset's
    family-dependent values)."""
    explicit: dict[str, Any] = {}
    one_budget(base, {"epochs": args.epochs, "steps": args.steps})
    for option, field in _FIELDS.items():
        value = getattr(args, option, None)
        if value is not None:
            explicit[field] = None if value == _NONE else value
    if getattr(args, "hidden", None) is not None:
        explicit["hidden"] = hidden_sizes(args.hidden)
    if getattr(args, "samples", None) is not None:  # a family option: extra.samples
        extra = dict(base.get("extra") or {})
        extra.pop("loo_samples", None)  # its older name (reinforce-loo): --samples replaces it
        explicit["extra"] = {**extra, "samples": args.samples}
    protocol = getattr(args, "protocol", None)
    if protocol is not None:
        keep = set(explicit)
        merged = {**base, **explicit, "protocol": protocol, "protocol_overrides": None}
    else:
        keep = set(base.get("protocol_overrides") or ()) | set(explicit)
        merged = {**base, **explicit}
    return TrainConfig.from_dict(merged).follow_protocol(keep)


def run_train(args: argparse.Namespace) -> int:
    from binaryvae.runs import TrainingDiverged, parse_seeds, train_replicas, train_run

    for option, value in (("--out", args.out), ("--config", args.config),
                          ("--data-dir", args.data_dir)):  # fmt: skip
        path_option(value, option)
    if args.seeds is not None and args.seed is not None:
        raise BadInput("give --seed N (one run) or --seeds 0-7 (replicas), not both")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    config = config_from_args(args)
    if seeds is not None:
        summaries = train_replicas(
            config, seeds, args.out, resume=args.resume, force=args.force, progress=not args.quiet
        )
        if not args.no_report:
            from binaryvae.report import write_report

            write_report(args.out)
        stopped = []
        for seed, summary in summaries.items():
            if summary.get("status") == "diverged":
                stopped.append(seed)
                print(f"seed {seed}: stopped: {summary['message']}", file=sys.stderr)
            else:
                print_summary(Path(args.out) / f"seed-{seed}", summary)
        return 1 if stopped else 0
    try:
        summary = train_run(
            config, args.out, resume=args.resume, force=args.force, progress=not args.quiet
        )
    except TrainingDiverged as e:
        print(f"binaryvae train: stopped: {e}", file=sys.stderr)
        return 1
    if not args.no_report:
        from binaryvae.report import write_report

        write_report(args.out)
    print_summary(args.out, summary)
    return 0
