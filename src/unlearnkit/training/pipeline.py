"""`train`: data -> split -> model -> fit -> run directory; and `load_run` to read one back.

Every input is checked before anything is written, so bad input never leaves a
half-made run directory; the run is marked finished only by its final two files.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearnkit.config import RunConfig, validate
from unlearnkit.data import DatasetBundle, Split, absolute_source, load_dataset, make_split, split_from_manifest
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.api import peak_memory_mb
from unlearnkit.models import create_model
from unlearnkit.runs import CHECKPOINT_FILE, MODEL_FILE, RunDir, environment, load_weights, prepare_out_dir, save_model
from unlearnkit.runs import writes_run_dir
from unlearnkit.training.data import Normalizer, TensorSet, stream_seed
from unlearnkit.training.loop import DivergedError, evaluate, fit
from unlearnkit.training.runtime import Runtime


# In-memory datasets by their `memory:` source name: the plain API (unlearnkit.simple) registers the
# sets it was given for the duration of one audit, whose run directories name them as their data.
MEMORY_DATASETS: dict[str, DatasetBundle] = {}


def load_data(cfg: RunConfig) -> DatasetBundle:
    if cfg.data.source in MEMORY_DATASETS:
        return MEMORY_DATASETS[cfg.data.source]
    if not cfg.data.source:
        raise UnlearnkitError(
            f"preset {cfg.preset!r} needs a dataset: pass --data PATH (e.g. ../shared/datasets/cifar10-jpeg.tar.gz)"
        )
    return load_dataset(
        cfg.data.source, labels_csv=cfg.data.labels_csv, download=cfg.data.download, test_fraction=cfg.data.test_fraction
    )


def build_model(cfg: RunConfig, split: Split, seed: int | None = None) -> nn.Module:
    """A freshly initialised model for this config; `seed` (default: the run's) fixes the weights."""
    torch.manual_seed(cfg.seed if seed is None else seed)
    in_channels = int(split.bundle.train.images.shape[1])
    extra = {"flip_tta": True} if cfg.model.flip_tta else {}  # only models that support it accept it
    return create_model(cfg.model.name, split.num_classes, in_channels=in_channels, width=cfg.model.width, **extra)


@dataclass
class LoadedRun:
    """A run directory read back: what methods and the audit need to work on it."""

    dir: RunDir
    config: RunConfig
    info: dict[str, Any]
    split: Split
    normalizer: Normalizer
    runtime: Runtime
    metrics: dict[str, Any] = field(default_factory=dict)

    def tensors(self, part: str) -> TensorSet:
        p = self.split.part(part)
        return TensorSet.from_numpy(p.images, p.labels, self.runtime)

    def fresh_model(self, seed: int | None = None) -> nn.Module:
        return self.runtime.model(build_model(self.config, self.split, seed))

    def load_model(self) -> nn.Module:
        model = build_model(self.config, self.split)
        arch = f"{self.config.model.name} (width {self.config.model.width})"
        return self.runtime.model(load_weights(model, self.dir.file(MODEL_FILE), arch))


def load_run(path: str | Path, *, data: str | None = None, runtime: Runtime | None = None, require_model: bool = True) -> LoadedRun:
    """Read a finished run directory; `data` overrides the recorded dataset path (same fingerprint needed)."""
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise UnlearnkitError(f"run directory {run.path} does not exist; train one with `unlearnkit train --out {run.path}`")
    cfg = RunConfig.from_dict(run.read_json("config.json", "run config"))
    info = run.read_json("run.json", "run record")
    if require_model and not run.finished:
        raise UnlearnkitError(
            f"run {run.path} has no finished model (training did not complete); finish it with `unlearnkit train --resume --out {run.path}`"
        )
    if data is not None:
        cfg.data.source = data
    bundle = load_data(cfg)
    split = split_from_manifest(bundle, run.read_json("split.json", "split manifest"), where=f"run {run.path}")
    norm = info["normalizer"]
    metrics = run.read_json("metrics.json") if run.file("metrics.json").is_file() else {}
    return LoadedRun(run, cfg, info, split, Normalizer(tuple(norm["mean"]), tuple(norm["std"])),
                     runtime or Runtime.from_config(cfg.runtime), metrics)


def evaluate_parts(model: nn.Module, loaded: "LoadedRun | tuple[Split, Normalizer, Runtime]", parts: tuple[str, ...], batch_size: int = 1024) -> dict[str, float]:
    """Accuracy (%) on each named part of the split, e.g. ("retain", "forget", "val", "test")."""
    split, norm, rt = (loaded.split, loaded.normalizer, loaded.runtime) if isinstance(loaded, LoadedRun) else loaded
    out = {}
    for name in parts:
        p = split.part(name)
        if len(p.labels):
            out[f"{name}_acc"] = round(evaluate(model, TensorSet.from_numpy(p.images, p.labels, rt), norm, rt, batch_size)["acc"], 3)
    return out


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict]


def with_absolute_paths(cfg: RunConfig) -> RunConfig:
    """A copy of `cfg` whose dataset and labels paths are absolute (what config.json records)."""
    cfg = RunConfig.from_dict(cfg.to_dict())
    cfg.data.source = absolute_source(cfg.data.source)
    if cfg.data.labels_csv:
        cfg.data.labels_csv = str(Path(cfg.data.labels_csv).expanduser().resolve())
    return cfg


@writes_run_dir("out")  # locked while it runs; a failure before the first checkpoint leaves no directory
def train(cfg: RunConfig, out: str | Path, *, resume: bool = False, wandb: bool = False) -> TrainResult:
    """Train the original model of `cfg` into the run directory `out` (resumable after a kill)."""
    t_start = time.perf_counter()
    cfg = with_absolute_paths(validate(cfg))
    run = prepare_out_dir(Path(out), resume=resume, recipe=cfg.resume_recipe())  # precision included
    if resume and run.finished:
        raise UnlearnkitError(f"--resume: run {run.path} is already finished; nothing to do")
    runtime = Runtime.from_config(cfg.runtime)  # an absent device (mps, cuda:3) fails before the data load
    bundle = load_data(cfg)  # data errors surface before anything is written
    split = make_split(bundle, cfg.data.val_fraction, cfg.seed)
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    normalizer = Normalizer.fit(split.part("train").images)
    model = runtime.model(build_model(cfg, split))
    logger = _wandb_logger(cfg, run.path) if wandb else None

    if not resume:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_json("config.json", cfg.to_dict())
        run.write_json("split.json", split.manifest())
        run.write_json("run.json", {
            "kind": "original",
            "status": "running",
            # A trained run is the root of every lineage unlearned from it (unlearnkit.provenance).
            "provenance": f"trained {cfg.model.name} (width {cfg.model.width}) on {bundle.name}, seed {cfg.seed}",
            "dataset": {"name": bundle.name, "source": str(bundle.source), "fingerprint": bundle.fingerprint,
                        "classes": list(bundle.classes)},
            "normalizer": {"mean": normalizer.mean, "std": normalizer.std},
            "environment": environment(),
            "runtime": runtime.describe(),
        })
    elif split.manifest() != run.read_json("split.json", "split manifest"):
        raise UnlearnkitError(f"--resume: {run.path} was split from other data; pass the same --data as when it started")

    train_set = TensorSet.from_numpy(split.part("train").images, split.part("train").labels, runtime)
    val_part = split.part("val")
    val_set, val_key = TensorSet.from_numpy(val_part.images, val_part.labels, runtime), "val"
    if 0 < cfg.train.val_probe < len(val_set):
        rng = np.random.default_rng(stream_seed(cfg.seed, "val_probe"))
        val_set, val_key = val_set.subset(np.sort(rng.choice(len(val_set), cfg.train.val_probe, replace=False))), "val_probe"

    def on_epoch(history: list[dict]) -> None:
        run.write_log(history)
        if logger is not None:
            logger(history[-1])

    t0 = time.perf_counter()
    try:
        history = fit(
            model, train_set, cfg.train, runtime, normalizer, seed=cfg.seed, val=val_set,
            checkpoint=run.file(CHECKPOINT_FILE),
            on_epoch=on_epoch,
            desc=f"train {cfg.model.name}",
            val_key=val_key,
        )
    except DivergedError as exc:
        # Resuming would replay the same batches into the same NaN, so the run is of no use:
        # remove it rather than leave a directory that looks resumable.
        shutil.rmtree(run.path, ignore_errors=True)
        raise UnlearnkitError(
            f"training diverged ({exc}) with train.lr={cfg.train.lr:g}; lower train.lr (e.g. --set train.lr="
            f"{cfg.train.lr / 10:g}) and train again — {run.path} was removed"
        ) from None
    train_seconds = sum(r["seconds"] for r in history)
    loop_seconds = time.perf_counter() - t0
    final = evaluate_parts(model, (split, normalizer, runtime), ("train", "val", "test"), cfg.train.eval_batch_size)
    metrics = {
        "train_seconds": round(train_seconds, 2),  # the epochs only, summed over every session of a resumed run
        "loop_seconds_this_session": round(loop_seconds, 2),  # epochs + per-epoch validation
        # this process, end to end: data (cache) load, split, training, final evaluation (what a budget is)
        "wall_seconds_this_session": round(time.perf_counter() - t_start, 2),
        **final,
        "epochs": len(history),
        "img_per_s": round(sum(r["img_per_s"] or 0 for r in history) / max(1, len(history)), 1),
        # this session's peak: GPU memory allocated on CUDA, the process's max RSS elsewhere (as methods record)
        "peak_memory_mb": round(peak_memory_mb(runtime), 1),
    }
    save_model(model, run.file(MODEL_FILE), {"model": cfg.model.name, "width": str(cfg.model.width)})
    info = run.read_json("run.json")
    info["status"] = "finished"
    info["peak_memory_mb"] = metrics["peak_memory_mb"]
    run.write_json("run.json", info)
    run.write_json("metrics.json", metrics)
    run.file(CHECKPOINT_FILE).unlink(missing_ok=True)
    if logger is not None:
        logger({"final/" + k: v for k, v in metrics.items()})
    return TrainResult(run.path, metrics, history)


def _wandb_logger(cfg: RunConfig, out: Path):
    """W&B is optional: imported only when --wandb is given."""
    try:
        import wandb  # noqa: PLC0415
    except ImportError:
        raise UnlearnkitError("--wandb needs the wandb package; install it with `pip install unlearnkit[wandb]`") from None
    session = wandb.init(project="unlearnkit", name=out.name, config=cfg.to_dict(), dir=str(out))
    return lambda record: session.log(record)
