"""The optimizer: Adam, with the fused kernel where the device supports it; the reference
protocol's variants (issue 28): Adam's epsilon, the learned prior's logits by plain SGD, and
the encoder gradients' EMA moments (`binaryvae.models.grad_moments`) folded in at every step;
and the training interventions of the same issue: SGD with momentum instead of Adam, and a
learning rate multiplied once after a given epoch (`lr_factor`, `set_epoch_lr`); and an
estimator's own parameters (relax's, rodeo's control variates) in a group of their own lr."""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "DEFAULT_ADAM_EPS",
    "AdamWithSGDGroups",
    "SGDWithTrackers",
    "lr_factor",
    "make_optimizer",
    "set_epoch_lr",
]

DEFAULT_ADAM_EPS = 1e-8  # torch.optim.Adam's


class AdamWithSGDGroups(torch.optim.Adam):
    """Adam, except for the parameter groups marked ``"sgd": True``: those take plain gradient
    descent steps ``p <- p - lr * grad`` (no momentum, no state), as the reference code trains
    the prior's logits (``tf.keras.optimizers.SGD(prior_lr)``). ``trackers``: objects whose
    ``update()`` is called before every step (`binaryvae.models.grad_moments.ParamGradientEMA`),
    so they see the gradients of exactly the steps taken.

    Its ``state_dict`` is Adam's: the SGD parameters have no state, their group carries
    ``sgd`` and its ``lr``.
    """

    def __init__(self, groups: list[dict[str, Any]], *, trackers=(), **adam: Any):
        super().__init__(groups, **adam)
        self.trackers = list(trackers)

    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer.step
        for tracker in self.trackers:
            tracker.update()
        groups = self.param_groups
        with torch.no_grad():
            for group in groups:
                if group.get("sgd"):
                    params = [p for p in group["params"] if p.grad is not None]
                    if params:
                        torch._foreach_add_(params, [p.grad for p in params], alpha=-group["lr"])
        self.param_groups = [g for g in groups if not g.get("sgd")]
        try:
            return super().step(closure)
        finally:
            self.param_groups = groups


class SGDWithTrackers(torch.optim.SGD):
    """`torch.optim.SGD` (heavy-ball momentum: ``buf <- momentum * buf + grad``,
    ``p <- p - lr * buf``, ``buf`` = grad at the first step), calling each tracker's
    ``update()`` before every step as `AdamWithSGDGroups` does. The learned prior's logits
    (``prior_sgd_lr``) are a group of their own with momentum 0: plain SGD at that rate."""

    def __init__(self, groups: list[dict[str, Any]], *, trackers=(), **sgd: Any):
        super().__init__(groups, **sgd)
        self.trackers = list(trackers)

    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer.step
        for tracker in self.trackers:
            tracker.update()
        return super().step(closure)


def lr_factor(epoch: int, decay_epoch: int | None, decay: float | None) -> float:
    """What the learning rates are multiplied by in 1-based ``epoch``: 1 up to and including
    ``decay_epoch``, ``decay`` after it (`binaryvae.config.TrainConfig.lr_decay_epoch`); 1
    without a decay. A function of the epoch alone, so a resumed run recomputes it."""
    if decay_epoch is None or decay is None or epoch <= decay_epoch:
        return 1.0
    return float(decay)


def set_epoch_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Set every parameter group's learning rate to its ``initial_lr`` (what `make_optimizer`
    built it with) times ``factor`` (`lr_factor`); the same product wherever it is computed
    (checkpoints are checked against it)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor


def _options(model: torch.nn.Module, eps: float | None, prior_sgd_lr: float | None):
    own = getattr(model, "optimizer_options", None) or {}
    eps = own.get("eps", DEFAULT_ADAM_EPS) if eps is None else eps
    prior_sgd_lr = own.get("prior_sgd_lr") if prior_sgd_lr is None else prior_sgd_lr
    return float(eps), prior_sgd_lr


def _estimator_lr(model: torch.nn.Module) -> float | None:
    """The learning rate of the estimator's own Adam group (relax's ``relax_lr``), or None."""
    lr = getattr(getattr(model, "estimator", None), "own_lr", None)
    return None if lr is None else float(lr)


def _with_initial_lr(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer


def _make_sgd(model: torch.nn.Module, lr: float, momentum: float, prior_sgd_lr, tracker):
    """SGD over the model's parameters (the prior's logits alone at ``prior_sgd_lr`` without
    momentum, where given), fused where the device supports it."""
    groups = _groups(model, prior_sgd_lr)
    for group in groups:
        if group.get("sgd"):
            group["momentum"] = 0.0
    trackers = [tracker] if tracker is not None else []
    try:
        opt = SGDWithTrackers(groups, trackers=trackers, lr=lr, momentum=momentum, fused=True)
    except (RuntimeError, ValueError, TypeError):
        opt = SGDWithTrackers(groups, trackers=trackers, lr=lr, momentum=momentum)
    return _with_initial_lr(opt)


def _groups(model: torch.nn.Module, prior_sgd_lr: float | None) -> list[dict[str, Any]]:
    """The trainable parameters in the model's order (what checkpoints and replica stacking
    index by), as contiguous groups: Adam's, the prior's logits alone in an SGD group, and the
    estimator's own parameters (relax's control variate) in an Adam group at its own lr."""
    prior = getattr(getattr(model, "prior_module", None), "param", None)
    own_lr = _estimator_lr(model)
    estimator = getattr(model, "estimator", None)
    own = {id(p) for p in estimator.parameters()} if own_lr is not None else set()
    groups: list[dict[str, Any]] = []
    kinds: list[str] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if prior_sgd_lr is not None and p is prior:
            groups.append({"params": [p], "lr": float(prior_sgd_lr), "sgd": True})
            kinds.append("sgd")
            continue
        kind = "estimator" if id(p) in own else "adam"
        if kinds and kinds[-1] == kind:
            groups[-1]["params"].append(p)
        else:
            groups.append({"params": [p], "lr": own_lr} if kind == "estimator" else {"params": [p]})
            kinds.append(kind)
    return groups


def make_optimizer(
    model: torch.nn.Module,
    lr: float,
    *,
    eps: float | None = None,
    prior_sgd_lr: float | None = None,
    kind: str | None = None,
    momentum: float | None = None,
) -> torch.optim.Optimizer:
    """Adam (or SGD) over the model's trainable parameters.

    ``fused=True`` runs Adam's update as one kernel per parameter group instead of several
    elementwise passes per parameter (1.47x on a whole training step measured on a Xeon;
    1.17-1.24x on the AMD EPYC of docs/benchmarks.md, section 1); where the parameters' device
    or dtype has no fused kernel, the default implementation is used. Both compute the same
    update up to float rounding.

    ``eps`` (Adam's epsilon) and ``prior_sgd_lr`` (train the learned prior's logits by plain
    SGD at this rate instead of inside Adam) default to what the model was built with
    (``model.optimizer_options``, from `binaryvae.models.build_model`: the config's
    ``adam_eps`` and ``prior_sgd_lr``), else 1e-8 and None. A model that tracks its encoder
    gradients' moments (``model.grad_ema``) has them updated before every step. An estimator
    with ``own_lr`` (relax's ``relax_lr``, rodeo's ``rodeo_lr``) has its parameters in a group
    of that learning rate. With none of these the optimizer is plain ``torch.optim.Adam`` as
    before.

    ``kind`` ("adam" or "sgd") and ``momentum`` (SGD's) likewise default to the model's
    (``optimizer`` and ``momentum`` of `binaryvae.config.TrainConfig`), else "adam" and 0:
    "sgd" is `SGDWithTrackers`. Every parameter group records the rate it was built with as
    ``initial_lr``, which `set_epoch_lr` scales.
    """
    own = getattr(model, "optimizer_options", None) or {}
    kind = own.get("optimizer", "adam") if kind is None else kind
    momentum = float(own.get("momentum", 0.0) if momentum is None else momentum)
    eps, prior_sgd_lr = _options(model, eps, prior_sgd_lr)
    tracker = getattr(model, "grad_ema", None)
    if prior_sgd_lr is not None and not isinstance(
        getattr(getattr(model, "prior_module", None), "param", None), torch.nn.Parameter
    ):
        from binaryvae.errors import BadInput

        raise BadInput("prior_sgd_lr needs a learned prior (--prior learned)")
    if kind == "sgd":
        return _make_sgd(model, lr, momentum, prior_sgd_lr, tracker)
    if kind != "adam":
        from binaryvae.errors import BadInput

        raise BadInput(f"unknown optimizer {kind!r}; choose one of adam, sgd")
    if prior_sgd_lr is None and tracker is None and _estimator_lr(model) is None:
        params = [p for p in model.parameters() if p.requires_grad]
        try:
            return _with_initial_lr(torch.optim.Adam(params, lr=lr, eps=eps, fused=True))
        except (RuntimeError, ValueError, TypeError):
            return _with_initial_lr(torch.optim.Adam(params, lr=lr, eps=eps))
    groups = _groups(model, prior_sgd_lr)
    trackers = [tracker] if tracker is not None else []
    try:
        opt = AdamWithSGDGroups(groups, trackers=trackers, lr=lr, eps=eps, fused=True)
    except (RuntimeError, ValueError, TypeError):
        opt = AdamWithSGDGroups(groups, trackers=trackers, lr=lr, eps=eps)
    return _with_initial_lr(opt)
