"""Gradient ascent on the forget set: `neggrad` (forget only) and `neggrad+` (with a retain term)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from torch import nn

from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import (
    FORWARD, JOINT_FORWARD_CHANGE, StopGate, class_concentrated, class_lead, endless_batches, forget_and_retain, forgotten_classes, method_recipe, pass_samples,
    pass_steps, probe_loss,
)
from unlearnkit.methods.dualoptim import OptimizerParams, SplitLoss, make_trainer
from unlearnkit.params import param
from unlearnkit.training.loop import run_epoch


def _stop_gate(ctx: MethodContext, stop_loss: float, batch_size: int,
               class_margin: float = 0.0) -> tuple[StopGate, Callable]:
    """The early-stop guard and what it observes per forget batch: `measure(logits, labels, ce)`.

    stop_loss > 0: stop once the smoothed forget CE reaches it; < 0: never stop. The CE it watches
    is the plain batch mean over the forget samples; on a class request that is not the ascent's
    own CE (`ascent_ce`), which counts only the samples still predicted as their class and so
    never exceeds about ln(num_classes) -- a stop_loss above that (docs once suggested 5 for
    class removal) could never trip and silently ran the whole budget, as stop_loss -1 does.
    stop_loss 0 ("behave like a model that never saw the forget set") depends on the request:
    - random samples: stop once the smoothed forget CE reaches the original's held-out CE. Both
      that level and the starting one (the original's forget CE) are measured like the training
      batches (`probe_loss`), so a member/non-member gap smaller than one batch's noise still
      gives a meaningful target.
    - whole classes (`forgotten_classes`): the held-out CE is the wrong level, because the
      original still recognises held-out samples of the class, so the ascent stopped while the
      class was still predicted (cifar10-cpu class:cat kept 66-81% forget accuracy). A model
      retrained without the class never predicts it: its forget accuracy is 0 (retrain UA 100%).
      So the gate observes the share of the forgotten classes' samples in the batch that are no
      longer predicted as their class and stops once its smoothed value reaches CLASS_GONE.
      Accuracy, not CE: the CE of a never-seen class is unbounded, any CE level is arbitrary,
      and ascending past the point where the class is no longer predicted only damages the rest.
      A sample counts as gone once its class logit is `class_margin` below the best other one
      (see `still_predicted`).
    """
    if stop_loss < 0:
        return StopGate(), _batch_ce
    gone = forgotten_classes(ctx)
    if gone and stop_loss == 0:
        return StopGate(CLASS_GONE, start=0.0, smoothing=CLASS_SMOOTHING), _class_miss(gone, class_margin)
    if gone:
        # An explicit level on a class request: the plain forget CE, the level the user means. Its
        # average starts at the first batch's value (the original's CE on it, measured as the rest:
        # forget rows of a joint train-mode batch), not at `probe_loss`, whose one-class batches
        # normalise by their own statistics and read 3.5 where the joint batch reads ~0.1 (digits,
        # class 3): started there, the average crossed any level below ~3 at the first step.
        return StopGate(stop_loss), _plain_ce
    start = probe_loss(ctx, "forget", batch_size)
    return StopGate(stop_loss if stop_loss > 0 else probe_loss(ctx, "val", batch_size), start=start), _batch_ce


# Class requests: stop once the smoothed share of forgotten-class samples *not* predicted as their
# class reaches 97%. The batch share is a count over a whole batch (not a noisy loss), so the
# smoothing is light: from 0, six consecutive batches with no sample predicted as its class stop it.
CLASS_GONE = 0.97
CLASS_SMOOTHING = 0.5


def still_predicted(logits: torch.Tensor, labels: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Which samples a class request has not removed yet: their class logit is not `margin` below the best other.

    margin 0 is "still the argmax". A larger margin pushes each sample further past the
    decision boundary: the ascent sees train-mode batches (batch statistics of a joint
    forget+retain batch), the audit sees eval mode (running statistics), and a sample that
    has only just lost the argmax in the first can be predicted as its class again in the
    second (cifar10-cpu class:cat: the gate saw the class gone, the audit 35% forget accuracy).
    """
    return class_lead(logits, labels) > -margin  # strict: a tie is not a prediction of the class


def ascent_ce(logits: torch.Tensor, labels: torch.Tensor, whole_classes: bool, margin: float = 0.0) -> torch.Tensor:
    """The forget CE that the ascent raises: the batch mean; for a class request only over the
    samples still predicted as their class (`still_predicted`; the others count as 0 in the mean).

    The CE of a class nobody predicts is unbounded and its gradient does not vanish (p - onehot
    tends to a unit vector), so ascending it further only damages the rest of the model. A
    model retrained without the class simply never predicts it, so a sample that is no longer
    predicted as its (forgotten) class is done and stops pushing.
    """
    if not whole_classes:
        return F.cross_entropy(logits, labels)
    still = still_predicted(logits, labels, margin).float()
    return (F.cross_entropy(logits, labels, reduction="none") * still).sum() / len(labels)


def forget_logits(model: nn.Module, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """The model's logits on a forget batch `x`; with `context` (a class-concentrated request) normalised together with it.

    A batch of one class normalised by its own BatchNorm statistics is not what the model sees
    at test time: on digits class 3, such batches stopped the gate while the model, in eval
    mode, still predicted the class (forget accuracy 60-97%), and they drag the running
    statistics toward that class. Eval mode instead lets the ascent move the BatchNorm affine
    weights of every sample at once (retain accuracy fell to 25-60%). So a class's forget batch
    goes through the network together with a retain batch (`context`), in train mode, as in
    training; only the forget rows' logits are returned. The same holds for part of a class
    (`class:cat:0.5`) or any other set concentrated on a few classes (`common.class_concentrated`).
    A random forget set is a fair sample of the data, so its batches keep the forward they always had.
    """
    if context is None:
        return model(x)
    return model(torch.cat([x, context]))[:len(x)]


def _batch_ce(logits: torch.Tensor, labels: torch.Tensor, ce: torch.Tensor) -> float | None:
    return ce.item()


def _plain_ce(logits: torch.Tensor, labels: torch.Tensor, ce: torch.Tensor) -> float | None:
    return F.cross_entropy(logits.detach().float(), labels).item()


def _class_miss(gone: list[int], margin: float = 0.0) -> Callable:
    def measure(logits: torch.Tensor, labels: torch.Tensor, ce: torch.Tensor) -> float | None:
        of_class = torch.isin(labels, torch.tensor(gone, device=labels.device))
        if not of_class.any():
            return None  # a batch of other samples (a mixed request) says nothing about the classes
        return (~still_predicted(logits[of_class], labels[of_class], margin)).float().mean().item()
    return measure


def probe_cost(stop_loss: float, sizes: dict[str, int], probe: int = 2048) -> float:
    """REE of the stop guard's forward-only probes (forget, and val unless an explicit level is given).

    None runs on a class request (`_stop_gate`): at stop_loss 0 its guard counts the samples still
    predicted, and an explicit level's average starts at the first batch's CE.
    """
    if stop_loss < 0 or sizes.get("whole_classes"):
        return 0.0
    samples = min(probe, sizes["forget"]) + (min(probe, sizes["val"]) if stop_loss == 0 else 0)
    return FORWARD * samples / sizes["retain"]


STOP_LOSS_DOC = ("stop once the smoothed forget CE reaches this; 0 = the original's CE on val (a class request: once "
                 "the forgotten classes are no longer predicted); any value < 0 (e.g. -1) = never")


@dataclass
class NegGradHparams(OptimizerParams):
    # Jia et al. 2023 / SalUn's GA baseline: 5 epochs over the forget set at lr 1e-4 (SGD,
    # momentum 0.9). Budget: one pass over forget (0.11 REE on CIFAR-10 with 10% forget) at
    # lr 5e-4, plus two forward-only probes of <= 2048 samples for the stop guard. Ascent on
    # a random forget set generalises (held-out loss rises with it), so on CIFAR-10 even this
    # costs ~2 test points: lr stays small and the guard ends the ascent as soon as the
    # forget loss reaches the held-out loss (past that it only destroys the model).
    # Search: passes up to the paper's 5 epochs; lr over the GA range SalUn's sweeps report (1e-5 .. 1e-3) and above.
    forget_passes: float = param(1.0, gt=0, search=(0.5, 5.0), doc="passes over the forget set (fractions allowed)")
    # lr and weight_decay are the shared SGD's: with optimizer=dualoptim the loss has no retain
    # part, only the forget Adam (forget_lr) steps, and they change nothing, so lr is searched
    # only with sgd (NegGrad.dualoptim_inert: a user who sets them with dualoptim is warned).
    lr: float = param(5e-4, gt=0, search=(1e-5, 1e-2), log=True, search_if=("optimizer", "sgd"),
                      doc="small on purpose: ascent on CE is unbounded (sgd only: dualoptim steps with forget_lr)")
    batch_size: int = param(0, ge=0, doc="0 = the original recipe's batch size")
    weight_decay: float = param(0.0, ge=0, doc="no decay: it would pull toward zero, not away from the forget set (sgd only)")
    stop_loss: float = param(0.0, doc=STOP_LOSS_DOC)  # any negative value disables the guard: no lower bound
    # Class requests only. 0 = the paper's plain ascent up to the argmax. Searched because the
    # ascent runs in train mode and the audit in eval mode (see `still_predicted`).
    class_margin: float = param(0.0, ge=0, search=(0.0, 6.0), search_kinds=("class",),
                                doc="class requests: push a sample until its class logit is this far below the best other")


@register_method
class NegGrad(Method):
    """NegGrad / gradient ascent (Golatkar et al. 2020; GA baseline of Jia et al. 2023 and SalUn).

    Minimise -CE(forget): step *up* the forget loss. Nothing holds the rest of the model in
    place, so the lr is small and an early-stop guard ends the ascent once the mean forget CE
    of a batch exceeds the original model's CE on held-out data (the level of an unseen sample).
    """

    name = "neggrad"
    revision = 1
    changes = {1: JOINT_FORWARD_CHANGE}
    summary = "Gradient ascent on the forget set, stopped when its loss reaches held-out level (GA)."
    paper = "Golatkar et al., CVPR 2020; Jia et al., NeurIPS 2023 (GA baseline)"
    Hparams = NegGradHparams
    dualoptim_inert = ("lr", "weight_decay")  # a forget-only loss: dualoptim never steps the SGD

    def cost(self, hp: NegGradHparams, sizes, recipe) -> float:
        bs = hp.batch_size or recipe.batch_size
        # A class request (or a class-concentrated set) forwards a retain batch beside each forget batch: twice the samples.
        joint = 2 if sizes.get("whole_classes") or sizes.get("concentrated") else 1
        return joint * pass_samples(sizes["forget"], bs, hp.forget_passes) / sizes["retain"] + probe_cost(hp.stop_loss, sizes)

    def run(self, model, ctx: MethodContext, hp: NegGradHparams):
        forget = ctx.data("forget")
        # Unaugmented: the stop guard compares this loss with a held-out loss measured on plain images.
        cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay, augment=False)
        steps = pass_steps(len(forget), cfg.batch_size, hp.forget_passes)
        gate, measure = _stop_gate(ctx, hp.stop_loss, cfg.batch_size, hp.class_margin)
        trainer = make_trainer(model, cfg, steps, hp)

        whole = bool(forgotten_classes(ctx))
        with_retain = class_concentrated(ctx.split, ctx.num_classes)  # whole classes included

        def loss_fn(model, batch):
            # A class-concentrated request's stream gives (forget, retain) pairs: the retain rows only normalise.
            batch, context = batch if with_retain else (batch, None)
            logits = forget_logits(model, batch.x, None if context is None else context.x)
            ce = ascent_ce(logits, batch.y, whole, hp.class_margin)
            gate.observe(measure(logits, batch.y, ce))
            return SplitLoss(forget=-ce), {"forget_ce": ce.detach()}

        if with_retain:
            stream, _ = forget_and_retain(ctx, cfg, hp.forget_passes, "neggrad", augment_forget=False)
        else:
            stream = (b for _, b in zip(range(steps), endless_batches(forget, cfg, ctx, "neggrad/forget")))
        run_epoch(model, trainer, gate(stream), loss_fn, ctx.runtime, total=steps, desc="neggrad")
        gate.record(ctx.report, steps)
        return model


@dataclass
class NegGradPlusHparams(OptimizerParams):
    # Kurmanji et al. 2023 (SCRUB code, `train_negrad`): loss = alpha*CE(retain) - (1-alpha)*CE(forget)
    # with SGD lr 0.01, iterating over the retain set (5 epochs, alpha 0.9999 in their notebooks).
    # Budget: we iterate over the *forget* set instead (3 passes, each forget batch paired with a
    # retain batch of the same size = 0.67 REE on CIFAR-10); with ~100x fewer steps the forget
    # term needs far more weight than 1e-4, so alpha = 0.9 (on CIFAR-10 this keeps test
    # accuracy within 1 point; the same stop guard as `neggrad` caps the ascent).
    # Search: alpha as a list because the interesting values crowd toward 1 (their 0.9999).
    forget_passes: float = param(3.0, gt=0, search=(1.0, 5.0), doc="passes over forget, each batch paired with a retain batch")
    alpha: float = param(0.9, ge=0, le=1, search=[0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999],
                         doc="weight of the retain CE; 1 - alpha weighs the forget ascent")
    lr: float = param(0.01, gt=0, search=(1e-4, 0.05), log=True)
    batch_size: int = param(0, ge=0, doc="0 = the original recipe's batch size (both streams)")
    weight_decay: float = param(5e-4, ge=0)
    stop_loss: float = param(0.0, doc=STOP_LOSS_DOC)  # any negative value disables the guard: no lower bound


@register_method
class NegGradPlus(Method):
    """NegGrad+ (Kurmanji et al., NeurIPS 2023, "Towards Unbounded Machine Unlearning").

    Each step takes a forget batch and a retain batch and minimises
    alpha * CE(retain) - (1 - alpha) * CE(forget): descend on retain while ascending on forget.
    The shorter stream cycles; the forget passes set the cost; the stop guard of `neggrad`
    ends the run once the forget CE reaches held-out level.
    """

    name = "neggrad+"
    revision = 1
    changes = {1: JOINT_FORWARD_CHANGE}
    summary = "Ascend forget CE while descending retain CE, alpha-weighted (NegGrad+)."
    paper = "Kurmanji et al., NeurIPS 2023 (NegGrad+)"
    Hparams = NegGradPlusHparams

    def cost(self, hp: NegGradPlusHparams, sizes, recipe) -> float:
        bs = hp.batch_size or recipe.batch_size
        return 2 * pass_samples(sizes["forget"], bs, hp.forget_passes) / sizes["retain"] + probe_cost(hp.stop_loss, sizes)

    def run(self, model, ctx: MethodContext, hp: NegGradPlusHparams):
        cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay)
        stream, steps = forget_and_retain(ctx, cfg, hp.forget_passes, "neggrad+", augment_forget=False)
        gate, measure = _stop_gate(ctx, hp.stop_loss, cfg.batch_size)
        trainer = make_trainer(model, cfg, steps, hp)

        whole = bool(forgotten_classes(ctx))
        with_retain = class_concentrated(ctx.split, ctx.num_classes)  # whole classes included

        def loss_fn(model, pair):
            fb, rb = pair
            if with_retain:  # one joint batch: BatchNorm statistics of a mixed batch (`forget_logits`)
                logits = model(torch.cat([fb.x, rb.x]))
                f_logits, r_logits = logits[:len(fb.y)], logits[len(fb.y):]
            else:
                r_logits = model(rb.x)
                f_logits = model(fb.x)
            f_ce = ascent_ce(f_logits, fb.y, whole)
            gate.observe(measure(f_logits, fb.y, f_ce))
            retain = hp.alpha * F.cross_entropy(r_logits, rb.y)
            loss = SplitLoss(forget=-(1 - hp.alpha) * f_ce, retain=retain, total=retain - (1 - hp.alpha) * f_ce)
            return loss, {"correct": (r_logits.argmax(1) == rb.y).sum(), "n": len(rb.y), "forget_ce": f_ce.detach()}

        run_epoch(model, trainer, gate(stream), loss_fn, ctx.runtime, total=steps, desc="neggrad+")
        gate.record(ctx.report, steps)
        return model
