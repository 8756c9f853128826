"""benchmarks/gpu_tier.sh: refuses to run without a GPU; its CPU dry mode runs end to end on digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_tier.sh"

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the script would run for real")


def _run(out: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GPU_TIER_")}
    full.update({"PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env})
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=full, timeout=900)


def test_without_a_gpu_it_fails_first_with_one_clear_line(tmp_path):
    res = _run(tmp_path / "out")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "no CUDA GPU visible to torch" in res.stderr and "GPU_TIER_ALLOW_CPU=1" in res.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_dry_mode_runs_every_stage_and_keeps_records_but_no_models(tmp_path, cache_dir):
    out = tmp_path / "out"
    res = _run(out, GPU_TIER_ALLOW_CPU="1", GPU_TIER_METHODS="finetune", GPU_TIER_WORK=str(tmp_path / "work"),
               UNLEARNKIT_CACHE=str(cache_dir))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"] == {"throughput_eager": "ok", "bench": "ok"}
    assert summary["device"] == "cpu (dry mode)" and summary["torch"] == torch.__version__
    (orig,) = summary["originals"]
    assert orig["test_acc"] > 20 and orig["train_seconds"] > 0 and orig["peak_memory_mb"] > 0
    assert summary["throughput_eager"]["unlearnkit_loop_img_s"] > 0 and summary["bench_minutes"] is not None
    assert summary["bench_workers"] == 2  # the dry mode's default: audits beside the one training/unlearning job
    md = (out / "summary.md").read_text()
    assert "original seed 0: test" in md and "| finetune |" in md  # the leaderboard is embedded
    for name in ("leaderboard.md", "leaderboard.csv", "results.json", "logs/original__seed0.log"):
        assert (out / "bench" / name).is_file(), name
    assert (out / "bench.log").is_file() and (out / "gpu_tier.log").is_file()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".safetensors", ".pt", ".npz")], "models or logits were copied"
