"""Device and precision, decided in one place (the Lightning Fabric idea).

Nothing else in unlearnkit calls `.cuda()` or picks a dtype: code asks the `Runtime`
to move tensors/models and to open the autocast context.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.config import RuntimeConfig, check_device_name
from unlearnkit.errors import UnlearnkitError


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask: `taskset` and container limits count),
    the number bench jobs and tuning workers size themselves by."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cuda_available() -> bool:
    """Whether a CUDA device is usable: bench and tuning plans give jobs a GPU, not CPUs, then."""
    return torch.cuda.is_available()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU has bf16 dot-product instructions (measured: 1.6x fp32 training speed on
    a 2-core AMD EPYC with avx512_bf16); elsewhere bf16 autocast is emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: no cheap way to tell, assume native (Apple silicon and recent x86 have it)
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None = full fp32
    channels_last: bool
    compile: bool = False  # torch.compile every model made through `model()`

    @classmethod
    def from_config(cls, cfg: RuntimeConfig | None = None, *, device_key: str = "runtime.device") -> "Runtime":
        """`device_key`: how errors name the device setting (the Python API's `device=` argument)."""
        cfg = cfg or RuntimeConfig()
        if cfg.device == "auto":
            if torch.cuda.is_available():
                device = torch.device("cuda")
            elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
                device = torch.device("mps")
            else:
                device = torch.device("cpu")
        else:
            device = _device(cfg.device, device_key)
        if cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda"):
            dtype = torch.bfloat16  # bf16 needs no loss scaling, unlike fp16
        else:
            dtype = None
        if dtype is not None and device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn(
                "runtime.precision=bf16 on a CPU without native bf16 instructions (avx512_bf16/amx_bf16) is "
                "emulated and slower than fp32; add --set runtime.precision=fp32",
                stacklevel=2,
            )
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if cfg.compile:
            check_compiler(device)
        return cls(device, dtype, cfg.channels_last, cfg.compile)

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile:
            # In place (nn.Module.compile): the module keeps its type and state_dict keys, so saving,
            # loading and the registry see a plain model. A deepcopy (what methods train) runs eager.
            model.compile()
        return model

    def tensor(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=True)

    def describe(self) -> str:
        prec = "fp32" if self.autocast_dtype is None else str(self.autocast_dtype).replace("torch.", "")
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type
        return f"{name} ({prec}{', channels_last' if self.channels_last else ''}{', compiled' if self.compile else ''})"


def _device(name: str, key: str = "runtime.device") -> torch.device:
    """The device `name` names, checked to exist here: torch.device() accepts cuda:7 on a machine
    with one GPU (or mps without Metal), and the run would fail only at its first tensor moved there."""
    check_device_name(name, key)
    cpu = "--set runtime.device=cpu" if key == "runtime.device" else f"{key}='cpu'"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UnlearnkitError(f"{key}={name!r} but CUDA is not available here; use {cpu}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UnlearnkitError(
                f"{key}={name!r} but this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1}); pick one of them"
            )
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise UnlearnkitError(f"{key}={name!r} but MPS (Apple's Metal) is not available here; use {cpu}")
    return device


def check_compiler(device: torch.device) -> None:
    """torch.compile fails only at the first forward pass, deep in a run; say up front what is missing.

    Its default backend (inductor) writes C++ for CPUs (needs a compiler) and Triton kernels for GPUs.
    """
    if device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise UnlearnkitError("runtime.compile=true needs a C++ compiler on CPU (none of c++, g++, clang++ found); install one or drop --set runtime.compile=true")
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        raise UnlearnkitError("runtime.compile=true needs the triton package on CUDA; `pip install triton` or drop --set runtime.compile=true")
    if device.type not in ("cpu", "cuda"):
        raise UnlearnkitError(f"runtime.compile=true is supported on cpu and cuda, not {device.type}; drop --set runtime.compile=true")
