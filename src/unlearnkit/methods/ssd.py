"""SSD: dampen the weights far more important to the forget set than to the training data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import FORWARD, class_concentrated, eval_batch_count, eval_batches, forgotten_classes, random_subset
from unlearnkit.params import param
from unlearnkit.training.data import TensorSet, stream_seed
from unlearnkit.training.loop import accuracy, predict_logits, progress


@dataclass
class SSDHparams:
    # Foster et al., AAAI 2024, official code (`ssd_tuning`, CIFAR): selection_weighting alpha = 10,
    # dampening_constant lambda = 1, importances from the whole training set and the forget set,
    # eval mode, squared batch gradients averaged over batches. Budget: I_D from a seeded random
    # subset of at most 10000 training samples (25% of CIFAR-10's 40k = 0.28 REE; the whole set
    # when smaller, e.g. digits) + I_f over the forget set (0.11 REE); no training at all. A
    # count, not a fraction: per-sample gradients are heavy-tailed, and an I_D from a handful of
    # batches underestimates some weights' importance and dampens them wrongly. Both
    # importances use the same batch size, so they are comparable.
    # Search: alpha from the paper's 10 to the 100 small networks need (and below); lambda around 1.
    alpha: float = param(10.0, gt=0, search=(1.0, 100.0), log=True, search_if=("alpha_search", False), doc="selection weighting: dampen where I_forget > alpha * I_train")
    dampening: float = param(1.0, gt=0, search=(0.1, 5.0), log=True, doc="lambda: beta = min(lambda * I_train / I_forget, 1)")
    train_samples: int = param(10000, ge=1, doc="training samples (seeded subset) for I_train; the whole set if fewer")
    batch_size: int = param(0, ge=0, doc="0 = the original recipe's batch size")
    # The useful alpha is a narrow band that moves with the network and the request: a whole
    # class of a 29k-parameter CNN needs ~100, airplane on cifar10-cpu 2.65, and 2.65 leaves cat
    # at 56% retain accuracy. Choosing it per request by the forget accuracy the dampened model
    # reaches (Potion's idea, Schoepf et al. 2024, adapted: bisection, and a scenario-aware
    # target instead of a fixed share of the starting accuracy) makes the setting carry over.
    alpha_search: bool = param(False, search=[False, True], doc="choose alpha per request (alpha is then unused): the largest alpha in [alpha_floor, alpha_ceiling] at which the dampened model's forget accuracy falls to what a model that never saw the forget set scores (0 on a forgotten class, the original's val accuracy otherwise) + accuracy_slack")
    alpha_floor: float = param(1.0, gt=0, doc="lowest alpha the search may pick (it stops there if the target is out of reach)")
    alpha_ceiling: float = param(1000.0, gt=0, doc="highest alpha the search may pick (it stops there if that already forgets enough)")
    accuracy_slack: float = param(0.02, ge=0, le=1, search=(0.0, 0.1), search_if=("alpha_search", True), doc="forget accuracy allowed above the target, as a fraction")
    search_steps: int = param(8, ge=1, doc="bisection steps in log(alpha)")
    probe_samples: int = param(1024, ge=1, doc="forget (and val) samples, seeded subset in whole batches, that measure accuracy during the search")

    def validate(self) -> None:
        if self.alpha_floor >= self.alpha_ceiling:
            raise UnlearnkitError(
                f"method.alpha_floor={self.alpha_floor:g} must be below method.alpha_ceiling={self.alpha_ceiling:g}"
            )


def fisher_diagonal(model: nn.Module, data: TensorSet, ctx: MethodContext, batch_size: int, desc: str,
                    as_batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of the batch-mean CE, per parameter element (eval mode).

    The value depends on the batch size: a batch-mean gradient's noise shrinks as 1/size. To
    compare with a set that comes in smaller batches (a forget set smaller than one batch is one
    batch of its own size), `as_batch_size` b < batch_size B gives what batches of b would give,
    from these batches' own variance: E[g_b^2] = E[g_B^2] + Var(g_B) (B/b - 1), the
    decomposition E[g^2] = mean^2 + per-sample variance / size, at no extra cost.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    imp = {n: torch.zeros_like(p) for n, p in named}
    rescale = as_batch_size is not None and as_batch_size < batch_size
    mean = {n: torch.zeros_like(p) for n, p in named} if rescale else {}
    n_batches = 0
    for b in progress(eval_batches(data, ctx, batch_size), eval_batch_count(len(data), batch_size), desc, unit="batch"):
        model.zero_grad(set_to_none=True)
        with ctx.runtime.autocast():
            loss = F.cross_entropy(model(b.x).float(), b.y)
        loss.backward()
        for n, p in named:
            if p.grad is not None:
                imp[n] += p.grad.float().pow(2)
                if rescale:
                    mean[n] += p.grad.float()
        n_batches += 1
    model.zero_grad(set_to_none=True)
    imp = {n: v / max(1, n_batches) for n, v in imp.items()}
    if rescale and n_batches > 1:
        for n, v in imp.items():
            var = (v - (mean[n] / n_batches).pow(2)).clamp_min(0) * (n_batches / (n_batches - 1))
            imp[n] = v + var * (batch_size / as_batch_size - 1)
    return imp


@register_method
class SSD(Method):
    """Selective Synaptic Dampening (Foster et al., AAAI 2024). No training.

    Diagonal Fisher importances (mean squared CE gradients) on the forget set, I_f, and on the
    training data, I_D. Every weight with I_f > alpha * I_D is specialised to the forget set
    and is multiplied by beta = min(lambda * I_D / I_f, 1) <= 1; all others stay. Parameters
    only: BatchNorm running statistics are left alone.
    """

    name = "ssd"
    summary = "Dampen weights much more important to forget than to train data (SSD, no training)."
    paper = "Foster et al., AAAI 2024 (Selective Synaptic Dampening)"
    Hparams = SSDHparams
    revision = 1
    changes = {1: "the alpha search targets the held-out accuracy of the forget set's own classes on a class-concentrated set"}

    def cost(self, hp: SSDHparams, sizes, recipe) -> float:
        # One gradient per sample of forget and of the train subset (train = retain + forget); no update.
        grads = sizes["forget"] + min(hp.train_samples, sizes["retain"] + sizes["forget"])
        # The alpha search: one forward of the probe subset per step and at both ends, plus val's once.
        probes = (hp.search_steps + 3) * min(hp.probe_samples, sizes["forget"]) * FORWARD if hp.alpha_search else 0.0
        return (grads + probes) / sizes["retain"]

    def run(self, model, ctx: MethodContext, hp: SSDHparams):
        bs = hp.batch_size or ctx.recipe.batch_size
        train = ctx.data("train")
        # Whole batches of training data (at most bs - 1 samples fewer): then the forget pass's ragged
        # last batch is the only other input shape, so a GPU tunes two shapes, not three.
        count = min(hp.train_samples, len(train))
        train = random_subset(train, max(bs, count - count % bs), stream_seed(ctx.seed, "ssd/train"))
        was_training = model.training
        model.eval()
        i_forget = fisher_diagonal(model, ctx.data("forget"), ctx, bs, "ssd importance on forget")
        # A forget set smaller than a batch is one batch of its own size, whose squared gradient is
        # up to bs times noisier than a full batch's: I_D must be taken at that size too. At the
        # recipe's size, ssd dampened the network to forget one sample (cifar10-cpu, `random:1`:
        # test accuracy 85.12 -> 81.30).
        i_train = fisher_diagonal(model, train, ctx, bs, "ssd importance on train", as_batch_size=min(bs, len(ctx.data("forget"))))
        dampen = Dampener(model, i_forget, i_train, hp.dampening)
        dampen(search_alpha(model, dampen, ctx, hp) if hp.alpha_search else hp.alpha)
        model.train(was_training)
        return model


class Dampener:
    """Sets the model's parameters to SSD's dampened original for any alpha (repeatable: the search tries several).

    beta = min(lambda * I_D / I_f, 1) does not depend on alpha; alpha only decides which weights
    take it (I_f > alpha * I_D), so a smaller alpha dampens a superset of weights and forgets more.
    """

    def __init__(self, model: nn.Module, i_forget: dict[str, torch.Tensor], i_train: dict[str, torch.Tensor], dampening: float) -> None:
        named = [(n, p) for n, p in model.named_parameters() if n in i_forget]
        self.params = [(p, p.detach().clone()) for _, p in named]
        self.importances = [(i_forget[n], i_train[n]) for n, _ in named]
        self.beta = [(dampening * d / f.clamp_min(torch.finfo(f.dtype).tiny)).clamp(max=1.0) for f, d in self.importances]

    @torch.no_grad()
    def __call__(self, alpha: float) -> None:
        for (p, p0), (f, d), beta in zip(self.params, self.importances, self.beta):
            p.copy_(p0 * torch.where(f > alpha * d, beta, torch.ones_like(beta)).to(p.dtype))


def forget_accuracy_target(ctx: MethodContext, forget: TensorSet, bs: int, probe_samples: int) -> float:
    """The forget accuracy (fraction) of a model that never trained on the forget set.

    A whole forgotten class: 0 (such a model never predicts it). Any other forget sample is an
    unseen sample of a class the model knows: it scores like held-out data *of its class*. A fair
    sample of the members has the members' class mix, so the original's accuracy on a random `val`
    subset estimates it. A class-concentrated set (half of the cats) does not: there the held-out
    samples are drawn class by class in the forget probe's proportions (`class_weighted_val`).
    With the plain val accuracy (85.6%, cifar10-cpu), half of the cats — which the original gets
    right 80% of the time and a model that never saw them 55% — already met the target, and the
    search returned the original unchanged (`class:cat:0.5`, seeds 0-2: alpha at its ceiling, UA 20
    where retraining has 44.5). A mixed request weighs the two by their counts.
    """
    gone = forgotten_classes(ctx)
    seen = ~torch.isin(forget.labels.cpu(), torch.tensor(gone, dtype=forget.labels.dtype))
    share = seen.float().mean().item()
    if share == 0:
        return 0.0
    if class_concentrated(ctx.split, ctx.num_classes):
        val = class_weighted_val(ctx.data("val"), forget.labels.cpu()[seen], probe_samples, stream_seed(ctx.seed, "ssd/val"))
    else:  # the members' mix: bit for bit the target of every fair request before the class weighting
        val = random_subset(ctx.data("val"), probe_samples, stream_seed(ctx.seed, "ssd/val"))
    return share * accuracy(predict_logits(ctx.original, val, ctx.normalizer, ctx.runtime, bs), val.labels) / 100


def class_weighted_val(val: TensorSet, forget_labels: torch.Tensor, count: int, seed: int) -> TensorSet:
    """About `count` held-out samples whose class mix is the forget samples': per class, its share of
    `count` (largest remainders; at least one), drawn without replacement by `seed`, at most all of
    that class's held-out samples. A forget class without held-out samples adds none (its share
    then weighs the classes that have some)."""
    labels = val.labels.cpu()
    counts = torch.bincount(forget_labels).double()
    quota = counts / counts.sum() * count
    take = quota.floor().long()
    take[torch.argsort(quota - take, descending=True)[: count - int(take.sum())]] += 1
    gen = torch.Generator().manual_seed(seed)
    picked = [torch.zeros(0, dtype=torch.long)]
    for c in counts.nonzero().flatten().tolist():
        pool = (labels == c).nonzero().flatten()
        picked.append(pool[torch.randperm(len(pool), generator=gen)[:max(1, int(take[c]))]])
    index = torch.cat(picked)
    if len(index) == 0:  # no held-out sample of any forget class: the plain subset
        return random_subset(val, count, seed)
    return val.subset(index.sort().values)


def search_alpha(model: nn.Module, dampen: Dampener, ctx: MethodContext, hp: SSDHparams) -> float:
    """The largest alpha in [alpha_floor, alpha_ceiling] whose dampened model meets the forget-accuracy target.

    Bisection in log(alpha): forget accuracy falls as alpha falls (more weights dampened), so the
    feasible alphas form an interval [alpha_floor, a*]; the largest keeps the most of the model.
    """
    bs = hp.batch_size or ctx.recipe.batch_size
    forget = ctx.data("forget")
    # Whole batches when subsampled (as for I_D): the probes then add no input shape to the two
    # the importance passes use; a forget set smaller than the probe is used whole.
    count = max(bs, hp.probe_samples - hp.probe_samples % bs) if hp.probe_samples < len(forget) else len(forget)
    probe = random_subset(forget, count, stream_seed(ctx.seed, "ssd/probe"))
    never_seen = forget_accuracy_target(ctx, probe, bs, hp.probe_samples)  # held-out accuracy from a full probe, whatever the forget size
    # A probe of n samples reaches only the accuracies k/n. When that grid is coarser than the
    # slack, the target rounds up to the next reachable level: one forgotten sample, which a model
    # that never saw it gets right 85% of the time, may stay right, where "<= 0.87" demanded that
    # it turn wrong and drove alpha to its floor.
    target = max(never_seen + hp.accuracy_slack, math.ceil(never_seen * len(probe) - 1e-9) / len(probe))

    tried: list[float] = []

    def meets(alpha: float) -> bool:
        bar.update()
        tried.append(alpha)
        dampen(alpha)
        return accuracy(predict_logits(model, probe, ctx.normalizer, ctx.runtime, bs), probe.labels) / 100 <= target

    low, high = hp.alpha_floor, hp.alpha_ceiling
    # leave=True: the chosen alpha stays on screen (and in a log's summary line) so a user can
    # pin it with alpha_search off.
    bar = progress(None, hp.search_steps + 2, "ssd alpha search", unit="probe", leave=True)
    try:
        if meets(high):
            chosen = high  # the upper end already forgets enough: dampen no more than that
        elif not meets(low):
            chosen = low  # out of reach within the range: the strongest dampening allowed
        else:
            for _ in range(hp.search_steps):
                mid = math.sqrt(low * high)
                if meets(mid):
                    low = mid
                else:
                    high = mid
            chosen = low
        bar.set_postfix_str(f"alpha {chosen:.4g}, forget accuracy target <= {target:.3f}", refresh=False)
    finally:
        bar.close()
    # What the search decided, for metrics.json: pin `alpha` to it with alpha_search off to repeat it.
    ctx.report.update(alpha=chosen, forget_accuracy_target=round(target, 4), probes=len(tried))
    return chosen
