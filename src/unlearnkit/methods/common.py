"""Pieces several methods share: their recipe, endless and paired batch streams, wrong labels,
temperature KL, held-out loss, an early-stop gate and the cost-estimate helpers.

Cost vocabulary used in every method's comments and in docs/methods.md: one *pass* is one
forward+backward over a set; a forward-only pass costs about 1/3 of that. Budgets are stated
in retain-epoch equivalents (REE) for CIFAR-10 with a 10% random forget set (retain 36k,
forget 4k, val 10k): `retrain` costs as many REE as the recipe has epochs (15 for cifar10-cpu),
an approximate method should cost <= 1 REE and the cheap ones <= 0.5 REE, which keeps every
method under the 10% of retraining that the methods issue allows (and the best under 5%).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import replace
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.config import TrainConfig
from unlearnkit.data.splits import Split
from unlearnkit.methods.base import MethodContext
from unlearnkit.training.data import Batch, TensorSet, batches, stream_seed
from unlearnkit.training.loop import epoch_batches

T = TypeVar("T")


# ---------------------------------------------------------------- recipe and step counts


def method_recipe(ctx: MethodContext, *, lr: float, batch_size: int = 0, weight_decay: float = 5e-4,
                  schedule: str = "cosine", augment: bool = True) -> TrainConfig:
    """The original run's recipe with the method's optimiser settings.

    `batch_size` 0 means the recipe's own batch size (128 for cifar10-cpu, 64 on digits), so one
    default works on both. Augmentation (crop/flip/cutout) stays the recipe's unless `augment` is off.
    Unlearning runs are short: cosine decay without warm-up, like `finetune`.
    """
    return replace(
        ctx.recipe, lr=lr, batch_size=batch_size or ctx.recipe.batch_size, weight_decay=weight_decay,
        schedule=schedule, warmup_fraction=0.0,
        **({} if augment else {"crop_padding": 0, "flip": False, "cutout": 0}),
    )


def pass_steps(n: int, batch_size: int, passes: float) -> int:
    """Steps of `batch_size` that see `passes` x `n` samples (fractions allowed); at least one.

    Counted in samples, not in whole batches per pass: a forget set smaller than two
    batches (tiny datasets) still gets `passes` passes' worth of samples.
    """
    return max(1, math.ceil(passes * n / max(1, min(batch_size, n)))) if n else 0


# ---------------------------------------------------------------- batch streams


def endless_batches(data: TensorSet, cfg: TrainConfig, ctx: MethodContext, tag: str,
                    relabel: Callable[[TensorSet, int], TensorSet] | None = None) -> Iterator[Batch]:
    """Shuffled, augmented batches of `data`, pass after pass, for ever.

    Pass k is ordered by `stream_seed(ctx.seed, tag, k)`; `relabel(data, k)` may give pass k
    new labels (random-label methods draw fresh wrong labels every pass).
    """
    for k in itertools.count():
        yield from epoch_batches(relabel(data, k) if relabel else data, cfg, ctx.normalizer, ctx.runtime, ctx.seed, tag, k)


def paired_batches(lead: Iterable[T], other: Iterable[Batch], steps: int) -> Iterator[tuple[T, Batch]]:
    """`steps` pairs (lead batch, other batch); both streams are endless, so the shorter set cycles."""
    return itertools.islice(zip(lead, other), steps)


def forget_and_retain(ctx: MethodContext, cfg: TrainConfig, passes: float, tag: str,
                      relabel: Callable[[TensorSet, int], TensorSet] | None = None,
                      augment_forget: bool = True) -> tuple[Iterator[tuple[Batch, Batch]], int]:
    """(forget batch, retain batch) pairs for `passes` over the forget set, and the step count.

    The forget set leads (its passes set the cost); retain batches of the same size are
    drawn from an endless shuffled stream of the retain set alongside. `augment_forget=False`
    gives the forget samples as they are (methods that measure or push their loss directly).
    """
    forget, retain = ctx.data("forget"), ctx.data("retain")
    steps = pass_steps(len(forget), cfg.batch_size, passes)
    forget_cfg = cfg if augment_forget else replace(cfg, crop_padding=0, flip=False, cutout=0)
    stream = paired_batches(endless_batches(forget, forget_cfg, ctx, f"{tag}/forget", relabel),
                            endless_batches(retain, cfg, ctx, f"{tag}/retain"), steps)
    return stream, steps


def eval_batches(data: TensorSet, ctx: MethodContext, batch_size: int) -> Iterator[Batch]:
    """Every sample once, in order, unaugmented (statistics such as Fisher importance)."""
    return batches(data, batch_size, ctx.normalizer, ctx.runtime)


def random_subset(data: TensorSet, count: int, seed: int) -> TensorSet:
    """`count` samples of `data` drawn without replacement by `seed` (all of it if count >= len)."""
    n = len(data)
    k = max(1, count)
    if k >= n:
        return data
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]
    return data.subset(order.sort().values)


# ---------------------------------------------------------------- labels and losses


def forgotten_classes(ctx: MethodContext) -> list[int]:
    """Classes the forget set covers whole (every training member of the class is in it): a class request.

    Methods whose target is "behave as on held-out data" must treat these differently: held-out
    samples of a forgotten class are still recognised by the original, so they are the wrong target.
    """
    return whole_classes(ctx.split, ctx.num_classes)


def whole_classes(split: Split, num_classes: int) -> list[int]:
    """`forgotten_classes` of a split: the classes whose every training member is in its forget set."""
    labels = split.bundle.train.labels
    forget = np.bincount(labels[split.forget_idx], minlength=num_classes)
    members = np.bincount(labels[split.train_idx], minlength=num_classes)
    return [c for c in range(num_classes) if forget[c] and forget[c] == members[c]]


# p-value below which a forget set's class counts are not a fair draw from the members: a uniform
# random request is flagged one time in a thousand, and then only takes the joint forward.
CONCENTRATION_P = 1e-3
# Draws of the null distribution: the smallest p-value they can give, 1/4001, is below the threshold.
CONCENTRATION_DRAWS = 4000


# `Method.changes` line of the revision that sent such sets through the joint forward (gan, neggrad, neggrad+).
JOINT_FORWARD_CHANGE = "a forget set concentrated on some classes (half a class, one class's ids) is forwarded beside a retain batch, as whole classes were"


def class_concentrated(split: Split, num_classes: int) -> bool:
    """Whether the forget set is concentrated on some classes instead of being a fair sample of the members.

    A batch drawn from such a set is mostly one class. Pushed through the network on its own — in
    eval mode, or in train mode with its own BatchNorm statistics — its outputs are cheapest to move
    by shifting what every class shares (a BatchNorm affine weight), so forgetting half the cats cost
    retain accuracy 3-9 points (gan, cifar10-cpu `class:cat:0.5`). Methods therefore forward the forget
    batches of such a set together with a retain batch, as for whole classes (`neggrad.forget_logits`).

    Whole classes count as concentrated. Otherwise the forget set's chi-square statistic against
    the members' class shares is compared with its distribution under fair draws of the same size,
    simulated (seeded, so the answer is fixed for a split): the textbook chi-square approximation
    fails at a few samples per class — two samples of one class out of 100 classes would read as
    p ~ 1e-8 although one random pair in a hundred is such a pair. One sample is never flagged.
    """
    labels = split.bundle.train.labels
    forget = np.bincount(labels[split.forget_idx], minlength=num_classes)
    members = np.bincount(labels[split.train_idx], minlength=num_classes)
    n, present = int(forget.sum()), members > 0
    if ((forget > 0) & (forget == members)).any():  # a whole class (`whole_classes`, from the same counts)
        return True
    if n == 0 or present.sum() < 2:
        return False
    share = members[present] / members[present].sum()
    expected = share * n

    def chi2(counts: np.ndarray) -> np.ndarray:
        return ((counts - expected) ** 2 / expected).sum(-1)

    null = chi2(np.random.default_rng(0).multinomial(n, share, size=CONCENTRATION_DRAWS))
    at_least = int((null >= chi2(forget[present]) * (1 - 1e-9)).sum())
    return (1 + at_least) / (1 + CONCENTRATION_DRAWS) < CONCENTRATION_P


def full_batch_share(n: int, batch_size: int) -> float:
    """The factor that makes a forget term averaged over a batch of n samples push each of them as
    hard as in a full batch: a forget set smaller than one batch is one batch of its own size n,
    and a plain mean over it would push each sample bs/n times harder. Exactly 1 on full batches
    (results there are bit for bit a plain mean's)."""
    return n / batch_size


def full_batch_mean(values: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean of per-sample forget terms as if the batch were full (`full_batch_share`)."""
    return values.mean() * full_batch_share(len(values), batch_size)


def request_sizes(split: Split) -> dict[str, int]:
    """The `sizes` a `Method.cost` estimate reads: retain / forget / val sample counts, and how many
    classes the forget set covers whole and whether it is class-concentrated (some methods take
    another, costlier path for those)."""
    n = {part: int(len(split.part(part).labels)) for part in ("retain", "forget", "val")}
    n["whole_classes"] = len(whole_classes(split, split.num_classes))
    n["concentrated"] = int(class_concentrated(split, split.num_classes))
    return n


def wrong_labels(labels: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """A label for each sample drawn uniformly from the other num_classes - 1 classes (never the true one)."""
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, labels.shape, generator=gen)
    return ((labels.cpu() + shift) % num_classes).to(labels.device)


def relabel_wrong(ctx: MethodContext, tag: str) -> Callable[[TensorSet, int], TensorSet]:
    """`relabel` for `endless_batches`: fresh random wrong labels on every pass, from the method's seed."""
    return lambda data, k: data.with_labels(wrong_labels(data.labels, ctx.num_classes, stream_seed(ctx.seed, tag, "labels", k)))


def class_lead(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample: its class logit minus the best other logit (> 0: still predicted as its class).

    Class requests push this below a margin (neggrad's `still_predicted`, loss_match's hinge).
    """
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return own - others


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
               per_sample: bool = False) -> torch.Tensor:
    """KL(teacher || student) of the temperature-softened outputs, times T^2 (Hinton et al. 2015):
    the batch mean, or one value per sample with `per_sample`."""
    t = temperature
    log_p = F.log_softmax(student_logits.float() / t, dim=1)
    log_q = F.log_softmax(teacher_logits.float() / t, dim=1)
    if per_sample:
        return F.kl_div(log_p, log_q, reduction="none", log_target=True).sum(1) * (t * t)
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True) * (t * t)


# A logit this low has probability 0 after any temperature (exp underflows) but keeps the KL finite,
# where -inf would give 0 * inf = NaN in the teacher's own term.
REMOVED_LOGIT = -1e4


def without_classes(logits: torch.Tensor, gone: torch.Tensor) -> torch.Tensor:
    """Teacher logits with the classes `gone` (a device tensor of indices) removed: softmax renormalises
    over the rest — the output of a model that never saw those classes. Empty `gone`: unchanged."""
    if len(gone):  # a shape, known on the host: no device sync
        return logits.index_fill(1, gone, REMOVED_LOGIT)
    return logits


@torch.no_grad()
def teacher_logits(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A frozen teacher's logits (eval mode, no graph); call inside the runtime's autocast."""
    return teacher(x).float()


@torch.no_grad()
def probe_loss(ctx: MethodContext, part: str, batch_size: int, max_samples: int = 2048) -> float:
    """The original model's mean CE on (a seeded subset of) `part`, measured the way training batches are.

    Like for like with a training loss: unaugmented batches of the training batch size through
    a *copy* of the original in train mode (BatchNorm on batch statistics; the copy's running
    statistics are thrown away). Forward-only over at most `max_samples` samples.
    """
    data = random_subset(ctx.data(part), max_samples, stream_seed(ctx.seed, "probe", part))
    probe = copy.deepcopy(ctx.original).train()
    total, n = 0.0, 0
    for b in batches(data, batch_size, ctx.normalizer, ctx.runtime, seed=stream_seed(ctx.seed, "probe-order", part)):
        with ctx.runtime.autocast():
            logits = probe(b.x).float()
        total += F.cross_entropy(logits, b.y, reduction="sum").item()
        n += len(b.y)
    return total / max(1, n)


class StopGate:
    """Ends a batch stream early once an observed quantity (e.g. the forget CE) reaches `target`.

    The loss function calls `observe(value)` every step; the value is smoothed (exponential
    moving average from `start`, so one noisy batch does not end the run) and once it reaches
    `target` the stream wrapped by the gate ends before its next batch.
    """

    def __init__(self, target: float = math.inf, start: float | None = None, smoothing: float = 0.7) -> None:
        self.target = target
        self.smoothing = smoothing
        self.level = start  # the smoothed value starts here (e.g. the forget CE before any step)
        self.stopped_at: int | None = None
        self._steps = 0

    def observe(self, value: float | None) -> None:
        if value is None:  # nothing measured this step (e.g. no sample of the watched kind in the batch)
            return
        self.level = value if self.level is None else self.smoothing * self.level + (1 - self.smoothing) * value
        if self.level >= self.target and self.stopped_at is None:
            self.stopped_at = self._steps

    def record(self, report: dict, planned: int) -> None:
        """Say in the method's report how many of the `planned` steps ran and where it stopped."""
        report.update(steps_planned=planned, steps_run=self._steps,
                      stopped_early=self.stopped_at is not None and self._steps < planned)

    def __call__(self, stream: Iterable[T]) -> Iterator[T]:
        for item in stream:
            if self.stopped_at is not None:
                return
            self._steps += 1
            yield item


# ---------------------------------------------------------------- cost estimates (REE)

FORWARD = 1 / 3  # a forward-only pass costs about a third of a forward+backward one


def pass_samples(n: int, batch_size: int, passes: float) -> int:
    """Samples that `pass_steps` batches of `batch_size` actually draw (what a cost estimate counts)."""
    return pass_steps(n, batch_size, passes) * min(batch_size, n) if n else 0


def eval_batch_count(n: int, batch_size: int) -> int:
    """Batches of `eval_batches` over n samples (the last one partial): a progress bar's total."""
    return math.ceil(n / batch_size) if n else 0
