"""Independent replicas of one model, stacked: S models of one configuration trained at once.

`stack_models` turns S VAEs of identical shape into one VAE whose every parameter has a leading
replica axis. Linear layers become one batched matrix product (`torch.baddbmm`), convolutions
one grouped convolution; everything else (the family, the objectives, the estimators) is the
plain code, run on tensors with one more axis. Shapes in the stacked model:

    data, codes, logits     [..., S, B, n]    (a sample axis K, if any, comes first)
    per-replica parameters  [S, 1, *P]        (a prior's logits, a decoder scale, a baseline)

so a per-replica parameter broadcasts against its replica's batch exactly as the plain
parameter ``[*P]`` broadcasts against ``[B, *P]``. Why batched matrix products and not
``torch.func.vmap`` over ``stack_module_state``: at the estimator protocol's shapes (8 replicas,
784-200-200-200, batch 50, 1 thread) baddbmm ran 1.42x faster than 8 sequential models and vmap
1.05x (bench/bench_replicas.py, docs/benchmarks.md): vmap's per-call batching rules cost as much
as they save at these sizes, and random draws inside vmap cannot come from per-replica
generators, which exact equality with single runs needs.

Replica r's state is recovered with `unstack_state` (a plain ``state_dict`` loadable into the
single model) and the stacked state built from S plain ones with `stack_state`; the optimizer's
state maps the same way (`stack_optimizer_state`, `unstack_optimizer_state`), so every replica
checkpoints as an ordinary run. `ReplicaGenerator` gives each replica its own noise: replica r
draws exactly what a single run with r's generator draws.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from binaryvae.models.grad_moments import ParamGradientEMA
from binaryvae.models.networks import MLP, ConvDecoder, ConvEncoder, InputAffine
from binaryvae.models.vae import VAE

__all__ = [
    "ReplicaGenerator",
    "StackedLinear",
    "StackedMLP",
    "StackedConvEncoder",
    "StackedConvDecoder",
    "replica_layouts",
    "stack_models",
    "stack_optimizer_state",
    "stack_state",
    "unstack_optimizer_state",
    "unstack_state",
]

# How a plain tensor [*P] sits in its stacked tensor:
#   "stack":  [S, *P]            (a linear layer's weight)
#   "stack1": [S, 1, *P]         (broadcast against a replica's batch axis)
#   "cat":    [S * P0, *P[1:]]   (a grouped convolution's weight or bias)
STACK, STACK1, CAT = "stack", "stack1", "cat"


class ReplicaGenerator:
    """One ``torch.Generator`` per replica: a draw of shape ``[..., S, B, n]`` takes its slice
    ``[..., r, :, :]`` from generator r, exactly what a single run with that generator draws
    for ``[..., B, n]`` (see `binaryvae.distributions.draw`)."""

    def __init__(self, generators: Sequence[torch.Generator]):
        if not generators:
            raise ValueError("ReplicaGenerator needs at least one generator")
        self.generators = list(generators)
        self.device = self.generators[0].device

    def draw(self, fn: Callable[..., torch.Tensor], shape, like: torch.Tensor) -> torch.Tensor:
        shape = tuple(shape)
        if len(shape) < 3 or shape[-3] != len(self.generators):
            raise ValueError(
                f"a replica draw needs shape [..., S={len(self.generators)}, B, n], got {shape}"
            )
        lead, tail = shape[:-3], shape[-2:]
        parts = [
            fn((*lead, *tail), generator=g, device=g.device, dtype=like.dtype)
            for g in self.generators
        ]
        return torch.stack(parts, dim=len(lead)).to(like.device)  # [..., S, B, n]


# ----------------------------------------------------------------------------- stacked layers
class StackedLinear(nn.Module):
    """S ``nn.Linear`` layers of one shape as one batched product: ``[S, M, in] -> [S, M, out]``.

    ``weight [S, out, in]`` (each slice an ``nn.Linear.weight``), ``bias [S, 1, out]``.
    """

    replica_layout = {"weight": STACK, "bias": STACK1}

    def __init__(self, layers: Sequence[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach()[None] for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight.transpose(1, 2))  # [S, M, out]


class _StackedConv(nn.Module):
    """S convolutions of one shape as one grouped convolution on ``[N, S * C, H, W]``; weight
    and bias are the replicas' concatenated along dim 0 (layout "cat")."""

    replica_layout = {"weight": CAT, "bias": CAT}
    transposed = False

    def __init__(self, convs: Sequence[nn.Conv2d | nn.ConvTranspose2d]):
        super().__init__()
        c = convs[0]
        self.groups, self.stride, self.padding = len(convs), c.stride, c.padding
        self.weight = nn.Parameter(torch.cat([m.weight.detach() for m in convs]))
        self.bias = nn.Parameter(torch.cat([m.bias.detach() for m in convs]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv_transpose2d if self.transposed else F.conv2d
        return conv(x, self.weight, self.bias, self.stride, self.padding, groups=self.groups)


class StackedConv2d(_StackedConv):
    pass


class StackedConvTranspose2d(_StackedConv):
    transposed = True


def _stack_sequential(seqs: Sequence[nn.Sequential]) -> nn.Sequential:
    """Stack position by position: linear and convolution layers stacked, stateless layers
    (activations) shared."""
    layers = []
    for group in zip(*seqs, strict=True):
        first = group[0]
        if isinstance(first, nn.Linear):
            layers.append(StackedLinear(group))
        elif isinstance(first, nn.ConvTranspose2d):
            layers.append(StackedConvTranspose2d(group))
        elif isinstance(first, nn.Conv2d):
            layers.append(StackedConv2d(group))
        elif not any(True for _ in first.parameters()) and not any(True for _ in first.buffers()):
            layers.append(copy.deepcopy(first))
        else:
            raise TypeError(f"cannot stack replicas of {type(first).__name__}")
    return nn.Sequential(*layers)


def _to_replica_major(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``[..., S, B, F] -> [S, M, F]`` (M = everything else) and the lead shape to undo it."""
    lead = tuple(x.shape[:-3])
    s, b, f = x.shape[-3:]
    if lead:
        x = x.movedim(-3, 0)
    return x.reshape(s, -1, f), (*lead, b)


def _from_replica_major(y: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `_to_replica_major`: ``[S, M, F] -> [..., S, B, F]``."""
    y = y.reshape(y.shape[0], *lead, y.shape[-1])
    return y.movedim(0, -3) if len(lead) > 1 else y


class StackedMLP(nn.Module):
    """S `MLP` replicas: ``[..., S, B, in] -> [..., S, B, out]``, one baddbmm per layer.

    The layout changes once at entry and exit; the layers work on ``[S, M, features]``.
    """

    def __init__(self, mlps: Sequence[MLP]):
        super().__init__()
        self.net = _stack_sequential([m.net for m in mlps])
        self.in_features, self.out_features = mlps[0].in_features, mlps[0].out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, lead = _to_replica_major(x)
        return _from_replica_major(self.net(h), lead)


class StackedConvEncoder(nn.Module):
    """S `ConvEncoder` replicas; the convolutions are grouped (one group per replica)."""

    def __init__(self, encoders: Sequence[ConvEncoder]):
        super().__init__()
        e = encoders[0]
        self.image_shape, self.feature_shape = e.image_shape, e.feature_shape
        self.conv = _stack_sequential([m.conv for m in encoders])
        self.head = StackedLinear([m.head for m in encoders])
        self.in_features, self.out_features = e.in_features, e.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, lead = _to_replica_major(x)  # [S, M, H*W]
        s, m, _ = h.shape
        img = h.transpose(0, 1).reshape(m, s, *self.image_shape)  # [M, S * 1, H, W]
        feats = self.conv(img).reshape(m, s, -1).transpose(0, 1)  # [S, M, 2c * H/4 * W/4]
        return _from_replica_major(self.head(feats), lead)


class StackedConvDecoder(nn.Module):
    """S `ConvDecoder` replicas; the transposed convolutions are grouped."""

    def __init__(self, decoders: Sequence[ConvDecoder]):
        super().__init__()
        d = decoders[0]
        self.feature_shape = d.feature_shape
        self.head = _stack_sequential([m.head for m in decoders])
        self.deconv = _stack_sequential([m.deconv for m in decoders])
        self.in_features, self.out_features = d.in_features, d.out_features

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, lead = _to_replica_major(z)  # [S, M, n]
        s, m, _ = h.shape
        c, fh, fw = self.feature_shape
        feats = self.head(h).transpose(0, 1).reshape(m, s * c, fh, fw)  # [M, S * 2c, h, w]
        out = self.deconv(feats).reshape(m, s, -1).transpose(0, 1)  # [S, M, out]
        return _from_replica_major(out, lead)


def _stack_input_affine(nets: Sequence[InputAffine]) -> InputAffine:
    """S `InputAffine` replicas: the wrapped networks stacked, the shifts as ``[S, 1, in]``
    (they broadcast against ``[..., S, B, in]``)."""
    inner = _stack_network([m.net for m in nets])
    shift = torch.stack([m.shift[None] for m in nets])  # [S, 1, in]
    out = InputAffine(inner, torch.zeros(()), scale=nets[0].scale)
    out.shift = shift
    return out


_NETWORKS: dict[type, Callable[[Sequence[nn.Module]], nn.Module]] = {
    MLP: StackedMLP,
    ConvEncoder: StackedConvEncoder,
    ConvDecoder: StackedConvDecoder,
    InputAffine: _stack_input_affine,
}


def _stack_network(nets: Sequence[nn.Module]) -> nn.Module:
    try:
        return _NETWORKS[type(nets[0])](nets)
    except KeyError:
        raise TypeError(f"cannot stack replicas of network {type(nets[0]).__name__}") from None


def _stack_direct_tensors(modules: Sequence[nn.Module], skip: Iterable[str] = ()) -> nn.Module:
    """A copy of ``modules[0]`` whose own parameters and buffers (not its children's) are the
    replicas' stacked as ``[S, 1, *P]`` (parameters stay parameters)."""
    out = copy.deepcopy(modules[0])
    for name in skip:
        delattr(out, name)  # replaced by the caller
    for name, value in list(modules[0].named_parameters(recurse=False)):
        stacked = torch.stack([dict(m.named_parameters(recurse=False))[name].detach()[None]
                               for m in modules])  # fmt: skip
        setattr(out, name, nn.Parameter(stacked, requires_grad=value.requires_grad))
    for name, _ in list(modules[0].named_buffers(recurse=False)):
        stacked = torch.stack([dict(m.named_buffers(recurse=False))[name][None] for m in modules])
        out.register_buffer(name, stacked)
    return out


def stack_models(models: Sequence[VAE]) -> VAE:
    """One VAE computing all of ``models`` at once (module docstring). The replicas must share
    family, networks and shapes (the same config with other seeds); their parameters are copied."""
    if not models:
        raise ValueError("stack_models needs at least one model")
    first = models[0]
    encoder = _stack_network([m.encoder for m in models])
    decoder = _stack_direct_tensors([m.decoder for m in models], skip=("net",))
    decoder.net = _stack_network([m.decoder.net for m in models])
    prior = _stack_direct_tensors([m.prior_module for m in models])
    estimator = None
    if first.estimator is not None:
        estimator = _stack_direct_tensors([m.estimator for m in models])
    stacked = VAE(first.family, encoder, decoder, first.latent_dim, prior, estimator,
                  logit_clamp=getattr(first, "logit_clamp", None))  # fmt: skip
    stacked.replicas = len(models)
    if hasattr(first, "optimizer_options"):
        stacked.optimizer_options = dict(first.optimizer_options)
    if getattr(first, "grad_ema", None) is not None:
        stacked.grad_ema = _stack_grad_ema([m.grad_ema for m in models], encoder)
    return stacked.to(next(first.parameters()).device)


def _stack_grad_ema(trackers: Sequence[ParamGradientEMA], encoder: nn.Module) -> nn.Module:
    """The stacked encoder's `ParamGradientEMA`: each moment buffer laid out as its parameter
    (the instance's ``replica_layout``), holding the replicas' moments."""
    layouts = replica_layouts(encoder)
    out = ParamGradientEMA(encoder.named_parameters(), decay=trackers[0].decay)
    out.replica_layout = {}
    for name, buffer in list(out.named_buffers(recurse=False)):
        kind, _, rest = name.partition("__")
        layout = layouts[rest.replace("__", ".")]
        out.replica_layout[name] = layout
        buffer.copy_(_join([dict(t.named_buffers(recurse=False))[name] for t in trackers], layout))
    return out


def replica_layouts(stacked: nn.Module) -> dict[str, str]:
    """``{state_dict key: layout}`` of a stacked model (the module docstring's layouts)."""
    layouts = {}
    for prefix, module in stacked.named_modules():
        own = getattr(module, "replica_layout", None)  # the class's, or an instance's
        for name, _ in [*module.named_parameters(recurse=False),
                        *module.named_buffers(recurse=False)]:  # fmt: skip
            key = f"{prefix}.{name}" if prefix else name
            layouts[key] = own[name] if own else STACK1
    return layouts


def _take(t: torch.Tensor, r: int, layout: str, replicas: int) -> torch.Tensor:
    if layout == STACK:
        return t[r]
    if layout == STACK1:
        return t[r, 0]
    size = t.shape[0] // replicas  # CAT
    return t[r * size : (r + 1) * size]


def _join(parts: Sequence[torch.Tensor], layout: str) -> torch.Tensor:
    if layout == STACK:
        return torch.stack(list(parts))
    if layout == STACK1:
        return torch.stack([p[None] for p in parts])
    return torch.cat(list(parts))


def unstack_state(state: dict[str, torch.Tensor], r: int, layouts: dict[str, str],
                  replicas: int) -> dict[str, torch.Tensor]:  # fmt: skip
    """Replica ``r``'s plain ``state_dict`` from a stacked one (clones: safe to keep)."""
    return {k: _take(v, r, layouts[k], replicas).clone() for k, v in state.items()}


def stack_state(states: Sequence[dict[str, torch.Tensor]], layouts: dict[str, str]) -> dict:
    """The stacked ``state_dict`` of S plain ones (inverse of `unstack_state`)."""
    return {k: _join([s[k] for s in states], layouts[k]) for k in states[0]}


def _param_names(model: nn.Module) -> list[str]:
    """Trainable parameter names in the order `make_optimizer` hands them to Adam."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


def unstack_optimizer_state(state: dict[str, Any], r: int, stacked: nn.Module) -> dict[str, Any]:
    """Replica ``r``'s slice of the stacked model's Adam ``state_dict``: the plain model's.

    Per-parameter tensors shaped like the parameter are sliced with its layout; scalars (Adam's
    ``step``, the same for every replica) are copied."""
    layouts, names = replica_layouts(stacked), _param_names(stacked)
    replicas = stacked.replicas
    out_state = {}
    for index, per_param in state["state"].items():
        layout = layouts[names[int(index)]]
        out_state[index] = {
            key: (_take(v, r, layout, replicas).clone() if torch.is_tensor(v) and v.dim() else
                  (v.clone() if torch.is_tensor(v) else v))
            for key, v in per_param.items()
        }  # fmt: skip
    return {"state": out_state, "param_groups": copy.deepcopy(state["param_groups"])}


def stack_optimizer_state(states: Sequence[dict[str, Any]], stacked: nn.Module) -> dict[str, Any]:
    """The stacked model's Adam ``state_dict`` from S plain ones (inverse of the above)."""
    layouts, names = replica_layouts(stacked), _param_names(stacked)
    out_state = {}
    for index, first in states[0]["state"].items():
        layout = layouts[names[int(index)]]
        out_state[index] = {
            key: (_join([s["state"][index][key] for s in states], layout)
                  if torch.is_tensor(v) and v.dim() else v)
            for key, v in first.items()
        }  # fmt: skip
    return {"state": out_state, "param_groups": copy.deepcopy(states[0]["param_groups"])}
