"""The optimiser choice of gradient methods: one shared SGD, or DualOptim's two optimisers.

DualOptim (Zhong, Luo & Liu, NeurIPS 2025; code CityU-MLO/DualOptim) gives the forget and the
retain objective separate optimisers: an adaptive one (Adam) for forgetting, the usual SGD for
retaining, each with its own moments and schedule, so the forget gradients' momentum never
mixes with the retain gradients' ("decoupled momentum"). A method whose loss has a forget and
a retain part returns a `SplitLoss`; `make_trainer` builds the trainer that
`hp.optimizer` names and the method's code stays the same for both:

- `sgd`: the shared `Trainer` (SGD + Nesterov, the recipe's schedule) on the sum of the parts,
  exactly as before this option existed (one backward of the method's own total);
- `dualoptim`: the retain part steps that SGD, the forget part steps Adam (betas 0.9/0.999,
  decoupled weight decay 0.05, as their `dual`/`dual_as` setting) with `hp.forget_lr` and a
  cosine schedule over the same steps. Both gradients are taken at the same weights.

A forget mask (SFR-on's saliency) and a gradient-norm clip on the forget part apply in both modes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.config import TrainConfig
from unlearnkit.params import param
from unlearnkit.training.loop import DivergedError, Trainer, lr_factor

OPTIMIZERS = ("sgd", "dualoptim")
FORGET_WEIGHT_DECAY = 0.05  # DualOptim's AdamW decay for the forget optimiser (their `dual` setting)


@dataclass
class OptimizerParams:
    """Fields every method with a forget objective shares (inherit the dataclass)."""

    optimizer: str = param("sgd", choices=OPTIMIZERS, search=list(OPTIMIZERS),
                           doc="sgd: one SGD on forget+retain (the papers); dualoptim: Adam on forget, SGD on retain")
    # DualOptim fixes the retain SGD and searches the forget lr; Adam steps are ~lr per weight.
    forget_lr: float = param(1e-4, gt=0, search=(1e-5, 3e-3), log=True, search_if=("optimizer", "dualoptim"),
                             doc="dualoptim only: the forget Adam's lr")


def optimizer_inert(hp, sgd_only: tuple[str, ...] = ()) -> dict[str, str]:
    """{field: why} for the fields of the shared SGD that `optimizer=dualoptim` makes inert: `sgd_only`,
    when the method's loss has no retain part (neggrad: `lr`, `weight_decay`), because then only the
    forget Adam steps the weights. (`forget_lr` under `sgd` needs no rule here: its `search_if`
    declaration says it, `Method.inert_fields`.)
    """
    if isinstance(hp, OptimizerParams) and hp.optimizer == "dualoptim":
        return {name: "with optimizer=dualoptim this method's loss has only a forget part, which the forget Adam "
                      "steps (method.forget_lr); set that instead, or method.optimizer=sgd" for name in sgd_only}
    return {}


@dataclass
class SplitLoss:
    """A loss in a forget part and a retain part (either may be absent).

    `total` is the method's own sum when it computes one in one piece (so `sgd` keeps its
    numerics bit for bit); otherwise the sum of the parts is used.
    """

    forget: torch.Tensor | None = None
    retain: torch.Tensor | None = None
    total: torch.Tensor | None = None

    def combined(self) -> torch.Tensor:
        if self.total is not None:
            return self.total
        parts = [t for t in (self.retain, self.forget) if t is not None]
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def item(self) -> float:
        return self.combined().item()

    def detach(self) -> torch.Tensor:  # run_epoch sums `loss.detach()` on the device for its progress stats
        return self.combined().detach()


def _step_unused(scheduler) -> None:
    """Advance a schedule whose optimiser did not step this time: torch warns when that happens before
    the optimiser's first step, which is expected here (both schedules count the method's steps)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        scheduler.step()


class SplitTrainer(Trainer):
    """`Trainer` whose `step` also takes a `SplitLoss` (see the module docstring)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, total_steps: int, *, optimizer: str = "sgd",
                 forget_lr: float = 1e-4, forget_mask: dict[str, torch.Tensor] | None = None,
                 forget_clip: float = 0.0, grad_mask: dict[str, torch.Tensor] | None = None):
        super().__init__(model, lr=cfg.lr, total_steps=total_steps, momentum=cfg.momentum, nesterov=cfg.nesterov,
                         weight_decay=cfg.weight_decay, schedule=cfg.schedule, warmup_fraction=cfg.warmup_fraction,
                         grad_mask=grad_mask)
        self.forget_mask = forget_mask
        self.forget_clip = forget_clip
        self.forget_optimizer = None
        if optimizer == "dualoptim":
            self.forget_optimizer = torch.optim.Adam([p for _, p in self.named_params], lr=forget_lr, betas=(0.9, 0.999))
            self.forget_scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.forget_optimizer, lambda s: lr_factor(s, total_steps, "cosine", 0.0))

    def step(self, loss) -> None:
        parts = loss if isinstance(loss, SplitLoss) else SplitLoss(retain=loss)
        if parts.forget is not None and not parts.forget.requires_grad:  # e.g. gan's switched-off push
            parts = SplitLoss(retain=parts.retain, total=parts.total)
        plain = self.forget_optimizer is None and self.forget_mask is None and not self.forget_clip
        if plain or parts.forget is None and self.forget_optimizer is None:
            super().step(parts.combined())  # one optimiser on the sum: the unchanged shared path
            return
        total = parts.combined()
        if not torch.isfinite(total):
            raise DivergedError(f"loss became {total.item()}")
        params = [p for _, p in self.named_params]
        g_forget = g_retain = None
        if parts.forget is not None:
            g_forget = self._forget_grads(torch.autograd.grad(parts.forget, params, retain_graph=parts.retain is not None,
                                                              allow_unused=True))
        if parts.retain is not None:
            g_retain = torch.autograd.grad(parts.retain, params, allow_unused=True)
        if self.forget_optimizer is None:  # sgd with a masked/clipped forget part: one step on the sum
            super().step(_surrogate(self.named_params, _add(g_forget, g_retain)))
            return
        if g_forget is not None:
            self._adam_step(g_forget)
            self.forget_scheduler.step()
        else:  # a retain-only step (gan's warm-up, a switched-off push) leaves Adam unstepped; its schedule still advances
            _step_unused(self.forget_scheduler)
        if g_retain is not None:
            super().step(_surrogate(self.named_params, g_retain))
            return
        _step_unused(self.scheduler)  # a forget-only step leaves the SGD unstepped; its schedule still advances

    def _forget_grads(self, grads: tuple) -> list:
        grads = [None if g is None else (g * self.forget_mask[n] if self.forget_mask is not None else g)
                 for (n, _), g in zip(self.named_params, grads)]
        if self.forget_clip:
            present = [g for g in grads if g is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present]))
            scale = (self.forget_clip / (norm + 1e-6)).clamp(max=1.0)
            grads = [None if g is None else g * scale for g in grads]
        return grads

    @torch.no_grad()
    def _adam_step(self, grads) -> None:
        """Adam on the forget gradients with decoupled decay; masked weights neither decay nor move."""
        lr = self.forget_optimizer.param_groups[0]["lr"]
        for (name, p), g in zip(self.named_params, grads):
            if g is None:
                p.grad = None
                continue
            mask = self.grad_mask[name] if self.grad_mask is not None else None
            p.grad = g * mask if mask is not None else g.clone()
            decay = lr * FORGET_WEIGHT_DECAY
            p.mul_(1 - decay * mask) if mask is not None else p.mul_(1 - decay)
        self.forget_optimizer.step()


def _surrogate(named: list, grads) -> torch.Tensor:
    """A loss whose gradient is exactly `grads` (sum of p * g): hands precomputed gradients to
    `Trainer.step`, which folds in weight decay, applies the mask, steps the SGD and its schedule."""
    return sum((p * g).sum() for (_, p), g in zip(named, grads) if g is not None)


def _add(a: list | None, b: tuple | None) -> list:
    if a is None or b is None:
        return list(a if a is not None else b)
    return [x if y is None else y if x is None else x + y for x, y in zip(a, b)]


def make_trainer(model: nn.Module, cfg: TrainConfig, total_steps: int, hp: OptimizerParams, **kw) -> SplitTrainer:
    """The trainer `hp.optimizer` names, for a method whose loss function may return `SplitLoss`."""
    return SplitTrainer(model, cfg, total_steps, optimizer=hp.optimizer, forget_lr=hp.forget_lr, **kw)
