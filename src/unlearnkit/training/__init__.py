"""Training: device/precision, on-device batches and augmentation, the loop, the train pipeline."""

from unlearnkit.training.data import Batch, Normalizer, TensorSet, batches, stream_seed
from unlearnkit.training.loop import (
    DivergedError, Trainer, accuracy, cross_entropy_loss, evaluate, fit, predict_logits, progress, run_epoch,
)
from unlearnkit.training.runtime import Runtime

__all__ = [
    "Batch", "DivergedError", "Normalizer", "Runtime", "TensorSet", "Trainer", "accuracy", "batches",
    "cross_entropy_loss", "evaluate", "fit", "predict_logits", "progress", "run_epoch", "stream_seed",
]
