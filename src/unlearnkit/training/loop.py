"""The one training loop: original training, retraining and every fine-tuning-style method.

`Trainer` owns the optimiser and schedule (SGD + Nesterov, per-step LR schedule) and an
optional gradient mask; `run_epoch` runs any loss over any batch iterator with a progress
bar; `fit` is the standard supervised recipe with per-epoch checkpoints and resume.
Methods write only their loss; optimiser, schedule, progress and device come from here.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from unlearnkit.config import TrainConfig
from unlearnkit.errors import UnlearnkitError
from unlearnkit.files import atomic_write_with
from unlearnkit.training.data import Batch, Normalizer, TensorSet, batches, stream_seed, steps_per_epoch
from unlearnkit.training.runtime import Runtime

LossFn = Callable[[nn.Module, object], "tuple[torch.Tensor, dict[str, float]] | torch.Tensor"]


def lr_factor(step: int, total: int, schedule: str, warmup_fraction: float,
              milestones: tuple[float, ...] = ()) -> float:
    """Multiplier on the peak LR at `step` (0-based) of `total` steps.

    `milestones` (multistep only): fractions of `total` at each of which the LR is multiplied by 0.1.
    """
    if schedule == "constant" or total <= 1:
        return 1.0
    warm = int(round(warmup_fraction * total))
    if step < warm:
        return (step + 1) / warm
    if schedule not in _DECAYS:
        raise UnlearnkitError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    passed = sum(step >= int(round(m * total)) for m in milestones)
    return _DECAYS[schedule]((step - warm) / max(1, total - warm), passed)


# The factor after warm-up, from the progress p in [0, 1] and the number of milestones passed.
_DECAYS: dict[str, Callable[[float, int], float]] = {
    "onecycle": lambda p, _: max(0.0, 1.0 - p),  # linear decay to zero: strong for short budgets (airbench, super-convergence)
    "cosine": lambda p, _: 0.5 * (1.0 + math.cos(math.pi * p)),
    "multistep": lambda _, passed: 0.1**passed,  # x0.1 at each milestone (He et al. 2016; SalUn's CIFAR recipe)
}
SCHEDULES = ("onecycle", "cosine", "multistep", "constant")


class Trainer:
    """SGD (Nesterov) with a per-step schedule, weight decay folded into the gradient, and a mask.

    Weight decay is added to the gradient *before* masking (instead of SGD's built-in
    decay) so that masked weights do not move at all: SalUn's guarantee.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float,
        total_steps: int,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 5e-4,
        schedule: str = "onecycle",
        warmup_fraction: float = 0.0,
        milestones: tuple[float, ...] = (),
        params: Iterable[nn.Parameter] | None = None,
        grad_mask: dict[str, torch.Tensor] | None = None,
    ):
        self.model = model
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if params is not None:
            keep = {id(p) for p in params}
            named = [(n, p) for n, p in named if id(p) in keep]
        self.named_params = named
        self.weight_decay = weight_decay
        self.grad_mask = grad_mask
        self.optimizer = torch.optim.SGD(
            [p for _, p in named], lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=0.0
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total_steps, schedule, warmup_fraction, milestones)
        )
        if grad_mask is not None:
            self._masks = [grad_mask[n] for n, _ in named]

    @classmethod
    def from_config(cls, model: nn.Module, cfg: TrainConfig, total_steps: int, **kw) -> "Trainer":
        return cls(
            model,
            lr=cfg.lr,
            total_steps=total_steps,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
            schedule=cfg.schedule,
            warmup_fraction=cfg.warmup_fraction,
            milestones=cfg.milestone_fractions(),
            **kw,
        )

    def step(self, loss: torch.Tensor) -> None:
        """One update. No host sync: `run_epoch` checks the loss for NaN/inf when it next syncs."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            have = [i for i, (_, p) in enumerate(self.named_params) if p.grad is not None]
            grads = [self.named_params[i][1].grad for i in have]
            # One fused (foreach) kernel per operation instead of one per parameter tensor.
            if self.weight_decay and grads:
                torch._foreach_add_(grads, [self.named_params[i][1] for i in have], alpha=self.weight_decay)
            if self.grad_mask is not None and grads:
                torch._foreach_mul_(grads, [self._masks[i] for i in have])
        self.optimizer.step()
        self.scheduler.step()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class DivergedError(RuntimeError):
    """A loss became NaN/inf; callers turn it into a user-facing message."""


def progress(iterable: Iterable, total: int | None, desc: str, **kw) -> tqdm:
    """The one progress-bar style (ETA, rate, running stats); quiet with UNLEARNKIT_QUIET=1.

    On a terminal (or in a notebook) the bar redraws in place. When stderr is a file or a pipe
    (CI logs, `| tee`, a bench job's log, a cluster job's output) redraws would pile up into one
    endless line, so the bar prints one line when its loop is finished instead; the epochs of one
    run (descriptions "retrain 1/15" ... "retrain 15/15") are summed into one line at the last.
    A loop still running after `UNLEARNKIT_LOG_INTERVAL` seconds (default 60; 0: never) also
    prints a progress line with its ETA, at most once per interval, so an hour-long bench or
    search in a log file says how far it is.
    """
    quiet = os.environ.get("UNLEARNKIT_QUIET") == "1"
    cls = _LineBar if not quiet and not _NOTEBOOK and not sys.stderr.isatty() else tqdm
    return cls(
        iterable,
        total=total,
        desc=desc,
        dynamic_ncols=True,
        mininterval=0.5,
        disable=quiet,
        **{"leave": False, **kw},
    )


_NOTEBOOK = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)  # widgets, not a terminal: redraws are fine
_EPOCH = re.compile(r"^(?P<name>.+) (?P<k>\d+)/(?P<n>\d+)$")
_epochs: dict[str, list[float]] = {}  # "retrain" -> [first epoch seen, steps, seconds] while its epochs run


_clock = time.monotonic  # what the progress lines' intervals and ETAs read (tests replace it)
_epoch_lines: dict[str, list[float]] = {}  # "retrain" -> [when its run started, when it last printed a progress line]


def _log_interval() -> float:
    return _parse_interval(os.environ.get("UNLEARNKIT_LOG_INTERVAL", "60"))


@functools.lru_cache(maxsize=8)  # one warning per bad value, not one per bar
def _parse_interval(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        warnings.warn(f"UNLEARNKIT_LOG_INTERVAL={text!r} is not a number of seconds; using 60 (0 turns progress lines off)",
                      stacklevel=2)
        return 60.0


class _LineBar(tqdm):
    """A tqdm that never redraws: `close` prints one summary line (or none, mid-way through a run's
    epochs), and a long loop prints a progress line with its ETA once per `_log_interval()`."""

    def __init__(self, *args, **kwargs):
        self._armed = False  # tqdm's __init__ draws once: nothing to print yet
        super().__init__(*args, **{**kwargs, "leave": False})  # a left bar would end with a blank line
        self._first_desc = self.desc  # the audit renames its bar per step; the summary uses the name it started with
        self._started = self._last_line = _clock()
        self._interval = _log_interval()  # read once per bar: display() runs on every redraw of the loop
        m = _EPOCH.match(self._first_desc)
        # The epochs of one run are one loop for the progress lines too: the interval runs across them.
        self._run = (m["name"], int(m["k"]), int(m["n"])) if m else None
        if self._run and (self._run[1] == 1 or self._run[0] not in _epoch_lines):
            _epoch_lines[self._run[0]] = [self._started, self._started]
        self._armed = True

    def display(self, *args, **kwargs):  # noqa: D102  (tqdm calls it to redraw: at most a progress line)
        if not self._armed or self.disable or self._interval <= 0:
            return None
        now = _clock()
        # setdefault: another run of the same name may have finished meanwhile (nested loops)
        run = _epoch_lines.setdefault(self._run[0], [self._started, self._started]) if self._run else None
        last = run[1] if run else self._last_line
        if now - last < self._interval:
            return None
        line = self._progress_line(now, run[0] if run else self._started)
        if line:
            print(line, file=sys.stderr, flush=True)
            if run:
                run[1] = now
            else:
                self._last_line = now
        return None

    def _progress_line(self, now: float, started: float) -> str | None:
        postfix = f" ({self.postfix})" if self.postfix else ""
        fmt = self.format_interval
        if self._run:  # "retrain: epoch 3/15, 1:52 elapsed, ETA 7:40" for the whole run
            name, k, epochs = self._run
            steps = (_epochs.get(name, [k, 0, 0.0])[1] if k > 1 else 0) + self.n
            secs = now - started  # since the run's first epoch here (probes between epochs too)
            if not self.total or steps <= 0:
                return None
            left = (self.total - self.n) + (epochs - k) * self.total  # later epochs: as long as this one
            return f"{name}: epoch {k}/{epochs}, {fmt(secs)} elapsed, ETA {fmt(left * secs / steps)}{postfix}"
        elapsed = now - started
        if not self.total or self.n <= 0:
            return f"{self.desc}: {fmt(elapsed)} elapsed{postfix}"
        share = min(self.n / self.total, 1.0)
        countable = float(self.n).is_integer() and not self.bar_format  # the bench's bar counts estimated cost
        done = f"{_count(self.n, 'step' if self.unit == 'it' else self.unit)} of {int(self.total)}, " if countable else ""
        eta = fmt(elapsed * (1 - share) / share)
        return f"{self.desc}: {done}{share:.0%}, {fmt(elapsed)} elapsed, ETA {eta}{postfix}"

    def close(self) -> None:
        if self.disable:
            return
        # Closed by an exception (a diverged loss, Ctrl-C): its one-line message says what happened.
        line = self._summary() if sys.exc_info()[0] is None else None
        super().close()
        if line:
            print(line, file=sys.stderr, flush=True)

    def _summary(self) -> str | None:
        seconds = self.format_dict["elapsed"]
        n = self.n
        postfix = f" ({self.postfix})" if self.postfix else ""
        m = _EPOCH.match(self._first_desc)
        if m is None:
            # A bar with its own format (the bench's, counting estimated cost) has no countable unit.
            countable = float(n).is_integer() and not self.bar_format
            count = f"{_count(n, 'step' if self.unit == 'it' else self.unit)} in " if countable else ""
            return f"{self._first_desc}: {count}{seconds:.1f} s{postfix}"
        name, k, total = m["name"], int(m["k"]), int(m["n"])
        first, steps, secs = _epochs.get(name, [k, 0, 0.0]) if k > 1 else [k, 0, 0.0]
        _epochs[name] = [first, steps + n, secs + seconds]
        if k < total:
            return None
        del _epochs[name]
        _epoch_lines.pop(name, None)
        epochs = _count(total, "epoch") if first == 1 else f"epochs {int(first)}-{total}"
        return f"{name}: {epochs}, {_count(steps + n, 'step')} in {secs + seconds:.1f} s{postfix}"


def _count(n: float, unit: str) -> str:
    plural = {"batch": "batches"}.get(unit, unit + "s")  # the one unit a bar counts whose plural is not +s
    return f"{int(n)} {unit if n == 1 else plural}"


@dataclass
class EpochStats:
    loss: float = 0.0
    acc: float = float("nan")
    seconds: float = 0.0
    samples: int = 0
    extra: dict[str, float] = field(default_factory=dict)


SYNC_SECONDS = 1.0  # the loop reads numbers back from the device (progress, NaN check) about once a second


def run_epoch(
    model: nn.Module,
    trainer: Trainer,
    loader: Iterable,
    loss_fn: LossFn,
    runtime: Runtime,
    *,
    total: int | None = None,
    desc: str = "train",
) -> EpochStats:
    """One pass of `loss_fn(model, item)` + `trainer.step`; item is whatever `loader` yields.

    `loss_fn` returns a loss, or (loss, stats) where stats may hold `correct` and `n`
    (for a running accuracy) and any other numbers to average and show. Stats may be
    device tensors: they are summed on the device and read back only about once a second
    (and at the end), so on a GPU the host queues steps ahead instead of waiting on each.
    A NaN/inf loss raises `DivergedError` at the next read-back.
    """
    model.train()
    t0 = last_sync = time.perf_counter()
    sums: dict[str, torch.Tensor | float] = {}
    steps = 0
    bar = progress(loader, total, desc)
    for item in bar:
        with runtime.autocast():
            out = loss_fn(model, item)
        loss, stats = out if isinstance(out, tuple) else (out, {})
        trainer.step(loss)
        steps += 1
        for k, v in (("loss", loss.detach().float()), *stats.items()):
            sums[k] = sums.get(k, 0.0) + v
        if time.perf_counter() - last_sync >= SYNC_SECONDS:
            shown = _read_back(sums, steps)
            bar.set_postfix({**shown, "lr": f"{trainer.lr:.3g}"}, refresh=False)
            last_sync = time.perf_counter()
    bar.close()
    values = {k: float(v) for k, v in sums.items()}  # waits for the device: `seconds` is the real time
    if steps:
        _read_back(values, steps)
    n = int(values.pop("n", 0))
    correct = values.pop("correct", 0.0)
    loss = values.pop("loss", float("nan")) / max(1, steps)
    return EpochStats(
        loss=loss,
        acc=100.0 * correct / n if n else float("nan"),
        seconds=time.perf_counter() - t0,
        samples=n,
        extra={k: v / max(1, steps) for k, v in values.items()},
    )


def _read_back(sums: dict[str, torch.Tensor | float], steps: int) -> dict[str, str]:
    """The running numbers for the progress bar (one host sync); raises on a non-finite loss so far."""
    loss = float(sums["loss"])
    if not math.isfinite(loss):
        raise DivergedError(f"loss became {loss} (summed over the epoch's first {steps} steps)")
    shown = {"loss": f"{loss / steps:.3f}"}
    if sums.get("n"):
        shown["acc"] = f"{100 * float(sums['correct']) / float(sums['n']):.1f}"
    return shown


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    def loss_fn(model: nn.Module, batch: Batch):
        logits = model(batch.x)
        loss = F.cross_entropy(logits, batch.y, label_smoothing=label_smoothing)
        return loss, {"correct": (logits.argmax(1) == batch.y).sum(), "n": batch.y.numel()}  # summed on the device

    return loss_fn


@torch.inference_mode()
def predict_logits(
    model: nn.Module, data: TensorSet, normalizer: Normalizer, runtime: Runtime, batch_size: int = 1024
) -> torch.Tensor:
    """Logits for every sample of `data`, in order, as float32 on the CPU (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    out = []
    for batch in batches(data, batch_size, normalizer, runtime):
        with runtime.autocast():
            out.append(model(batch.x).float())
    model.train(was_training)
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out).cpu()  # one device-to-host copy (one sync), not one per batch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    if len(labels) == 0:
        return float("nan")
    return 100.0 * (logits.argmax(1) == labels.cpu()).float().mean().item()


def evaluate(model: nn.Module, data: TensorSet, normalizer: Normalizer, runtime: Runtime, batch_size: int = 1024) -> dict[str, float]:
    logits = predict_logits(model, data, normalizer, runtime, batch_size)
    if len(data) == 0:
        return {"acc": float("nan"), "loss": float("nan")}
    loss = F.cross_entropy(logits, data.labels.cpu()).item()
    return {"acc": accuracy(logits, data.labels), "loss": loss}


def epoch_batches(data: TensorSet, cfg: TrainConfig, normalizer: Normalizer, runtime: Runtime, seed: int, tag: str, epoch: int) -> Iterator[Batch]:
    """The augmented, shuffled batches of one epoch; the order depends only on (seed, tag, epoch)."""
    return batches(
        data, cfg.batch_size, normalizer, runtime,
        seed=stream_seed(seed, tag, epoch), crop_padding=cfg.crop_padding, flip=cfg.flip, cutout=cfg.cutout,
    )


def fit(
    model: nn.Module,
    data: TensorSet,
    cfg: TrainConfig,
    runtime: Runtime,
    normalizer: Normalizer,
    *,
    seed: int,
    val: TensorSet | None = None,
    loss_fn: LossFn | None = None,
    checkpoint: Path | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
    desc: str = "train",
    val_key: str = "val",
) -> list[dict]:
    """Standard supervised training for `cfg.epochs`; returns the per-epoch log records.

    `val` is evaluated after every epoch and logged as `{val_key}_acc` / `{val_key}_loss`.

    With `checkpoint`, state is saved atomically after every epoch and, if the file already
    exists, training resumes from it with nothing lost (the batch order of every epoch is a
    function of the seed and the epoch number, so a resumed run matches an uninterrupted one).
    """
    loss_fn = loss_fn or cross_entropy_loss(cfg.label_smoothing)
    per_epoch = steps_per_epoch(len(data), cfg.batch_size)
    trainer = Trainer.from_config(model, cfg, total_steps=cfg.epochs * per_epoch)
    history: list[dict] = []
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, runtime.device)
        model.load_state_dict(state["model"])
        trainer.load_state_dict(state["trainer"])
        history = list(state["history"])
        start = int(state["epoch"])
    for epoch in range(start, cfg.epochs):
        stats = run_epoch(
            model, trainer, epoch_batches(data, cfg, normalizer, runtime, seed, "train", epoch),
            loss_fn, runtime, total=per_epoch, desc=f"{desc} {epoch + 1}/{cfg.epochs}",
        )
        record = {
            "epoch": epoch + 1,
            "train_loss": round(stats.loss, 5),
            "train_acc": round(stats.acc, 3),
            "seconds": round(stats.seconds, 2),
            "img_per_s": round(stats.samples / stats.seconds, 1) if stats.seconds else None,
            "lr": trainer.lr,
        }
        if val is not None and len(val):
            ev = evaluate(model, val, normalizer, runtime, cfg.eval_batch_size)
            record.update({f"{val_key}_acc": round(ev["acc"], 3), f"{val_key}_loss": round(ev["loss"], 5)})
        history.append(record)
        if checkpoint is not None:
            save_checkpoint(
                checkpoint,
                {"model": model.state_dict(), "trainer": trainer.state_dict(), "history": history, "epoch": epoch + 1},
            )
        if on_epoch is not None:
            on_epoch(history)  # the whole log so far, resumed epochs included
    return history


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict:
    """A checkpoint written by `save_checkpoint`, without unpickling; an unreadable one is a one-line error."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        raise UnlearnkitError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}); delete it to start this run over"
        ) from None


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temp file, then rename: a kill mid-write never leaves a corrupt checkpoint.

    Contents are tensors, dicts, lists and numbers only, so `torch.load(weights_only=True)` reads them.
    """
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))  # a unique temp name: two writers never collide
