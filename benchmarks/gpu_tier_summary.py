"""summary.md + summary.json for `benchmarks/gpu_tier.sh OUTDIR`: what one GPU call measured.

Reads only what the script left in OUTDIR (stage statuses, throughput JSON, the bench's run
records and leaderboard), so it works on partial outputs: a stage that timed out shows as such.
Run:  python benchmarks/gpu_tier_summary.py OUTDIR PRESET
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_text(path: Path, default: str = "") -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return default


def originals(out: Path) -> list[dict]:
    """The bench's original models: accuracy, training seconds, throughput, peak memory."""
    rows = []
    for metrics_path in sorted((out / "bench" / "store").glob("original-*/metrics.json")):
        m = read_json(metrics_path) or {}
        cfg = read_json(metrics_path.parent / "config.json") or {}
        info = read_json(metrics_path.parent / "run.json") or {}
        rows.append({
            "run": metrics_path.parent.name, "seed": cfg.get("seed"), "runtime": info.get("runtime"),
            **{k: m.get(k) for k in ("test_acc", "val_acc", "train_acc", "train_seconds", "wall_seconds_this_session",
                                     "epochs", "img_per_s", "peak_memory_mb")},
        })
    return rows


def main(out: Path, preset: str) -> dict:
    stages = {p.stem: read_text(p) for p in sorted(out.glob("*.status"))}
    bench_s = read_text(out / "bench_seconds.txt")
    summary = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (dry mode)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "preset": preset,
        "stages": stages,
        "bench_minutes": round(int(bench_s) / 60, 2) if bench_s.isdigit() else None,
        "bench_workers": int(w) if (w := read_text(out / "bench_workers.txt")).isdigit() else None,
        "originals": originals(out),
        "throughput_eager": read_json(out / "throughput_eager.json"),
        "throughput_compile": read_json(out / "throughput_compile.json"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    lines = [f"# GPU tier: {summary['device']}", "",
             f"torch {summary['torch']} (CUDA {summary['cuda']}), preset `{preset}`", "",
             "| stage | status |", "|---|---|", *(f"| {k} | {v} |" for k, v in stages.items()), ""]
    if summary["bench_minutes"] is not None:
        lines += [f"bench: {summary['bench_minutes']} min ({summary['bench_workers']} workers)", ""]
    for o in summary["originals"]:
        lines.append(f"original seed {o['seed']}: test {o['test_acc']}%, train {o['train_acc']}%, {o['epochs']} epochs in "
                     f"{o['train_seconds']} s ({o['img_per_s']} img/s), peak {o['peak_memory_mb']} MB, {o['runtime']}")
    for name in ("throughput_eager", "throughput_compile"):
        t = summary[name]
        if t:
            lines += ["", f"{name}: " + ", ".join(f"{k} {v}" for k, v in t.items() if k != "machine")]
    board = read_text(out / "bench" / "leaderboard.md")
    lines += ["", "## leaderboard", "", board or "(no leaderboard: the bench did not finish; see bench.log)"]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[:12 + len(summary["originals"])]))
    return summary


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
