"""kill -9 at a random moment of `train`, `forget`, `audit` and `bench`, then run again: same result?

For each command this first makes one uninterrupted reference run (digits), then N times:
starts the command, kills it with SIGKILL after a random delay in [0, reference wall time),
and runs it again the way a user would (with `--resume` where the command has it; when the
command answers that the run never got set up and says to drop `--resume`, without it).
Each trial passes when the rerun exits 0, its result is bit-identical to the reference's, and
no temp file (`*.tmp`) or lock file is left anywhere in the trial's folder:

  train   model.safetensors bytes      (a digits run, --set train.epochs=4)
  forget  model.safetensors bytes      (--method retrain, resumable from its epoch checkpoint)
  audit   audit.json without timings, creation time and paths (of a copied finetune run)
  bench   leaderboard.csv without the wall-time columns (digits, 1 epoch, finetune)

Run:  python benchmarks/kill_resume.py [--times 20] [--commands train,forget,audit,bench] [--seed 0]
Exit status 0 when every trial passes. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

TRAIN = ["train", "--preset", "digits", "--set", "train.epochs=4"]
BENCH = ["bench", "--preset", "digits", "--set", "train.epochs=1", "--methods", "finetune", "--seeds", "1"]


def cli(*argv: Any) -> list[str]:
    return [sys.executable, "-m", "unlearnkit", *map(str, argv)]


def run(argv: list[str]) -> tuple[int, str]:
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.returncode, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""


def run_killed(argv: list[str], delay: float) -> tuple[bool, float]:
    """Start `argv`, SIGKILL it after `delay` seconds: (killed, or finished first; seconds it ran)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=delay)
        return False, time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return True, time.perf_counter() - t0


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith(".tmp") or p.name == ".unlearnkit.lock")


def rerun(argv: list[str], resumable: bool) -> tuple[int, str, str]:
    """Run again after the kill: with --resume where the command has it, as the error message says otherwise."""
    if not resumable:
        code, err = run(argv)
        return code, err, "rerun"
    code, err = run([*argv, "--resume"])
    if code == 2 and "drop --resume" in err:
        code, err = run(argv)
        return code, err, "rerun without --resume (as told)"
    return code, err, "--resume"


def _normalised_audit(path: Path, folder: Path) -> Any:
    def walk(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items() if k not in ("timings", "created")}
        if isinstance(o, list):
            return [walk(v) for v in o]
        if isinstance(o, str):
            return o.replace(str(folder.resolve()), "<folder>").replace(str(folder), "<folder>")
        return o

    return walk(json.loads(path.read_text()))


def _leaderboard(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(path.open()))
    return [{k: v for k, v in r.items() if not k.startswith(("seconds", "time_ratio"))} for r in rows]


class Command:
    """How to run one command into a folder, and what of its result must not change."""

    def __init__(self, name: str, argv: Callable[[Path], list[str]], result: Callable[[Path], Any],
                 prepare: Callable[[Path], None] = lambda f: None, resumable: bool = True):
        self.name, self.argv, self.result, self.prepare, self.resumable = name, argv, result, prepare, resumable


def commands(ref: Path) -> dict[str, Command]:
    base, ft, rt = ref / "base", ref / "ft", ref / "rt"

    def fresh_ft(folder: Path) -> None:
        shutil.copytree(ft, folder / "ft")  # an unaudited unlearned run to audit in place

    return {
        "train": Command("train", lambda f: cli(*TRAIN, "--out", f / "run"),
                         lambda f: (f / "run" / "model.safetensors").read_bytes()),
        "forget": Command("forget", lambda f: cli("forget", base, "--method", "retrain", "--forget", "random:0.1", "--out", f / "run"),
                          lambda f: (f / "run" / "model.safetensors").read_bytes()),
        "audit": Command("audit", lambda f: cli("audit", f / "ft", "--reference", rt),
                         lambda f: _normalised_audit(f / "ft" / "audit.json", f), prepare=fresh_ft, resumable=False),
        "bench": Command("bench", lambda f: cli(*BENCH, "--out", f / "bench"),
                         lambda f: _leaderboard(f / "bench" / "leaderboard.csv"), resumable=False),
    }


def make_references(ref: Path) -> None:
    steps = [
        cli(*TRAIN, "--out", ref / "base"),
        cli("forget", ref / "base", "--method", "finetune", "--forget", "random:0.1", "--out", ref / "ft"),
        cli("forget", ref / "base", "--method", "retrain", "--forget", "random:0.1", "--out", ref / "rt"),
    ]
    for argv in steps:
        code, err = run(argv)
        if code != 0:
            sys.exit(f"reference run failed: {' '.join(argv)}: {err}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", type=int, default=20, help="kills per command (default 20)")
    ap.add_argument("--commands", default="train,forget,audit,bench")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (printed) for inspection")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="unlearnkit-kill-"))
    os.environ.setdefault("UNLEARNKIT_CACHE", str(work / "cache"))
    os.environ["UNLEARNKIT_QUIET"] = "1"
    ref = work / "ref"
    make_references(ref)
    table = []
    try:
        for name in [c.strip() for c in args.commands.split(",") if c.strip()]:
            cmd = commands(ref)[name]
            clean = work / f"{name}-clean"
            clean.mkdir()
            cmd.prepare(clean)
            t0 = time.perf_counter()
            code, err = run(cmd.argv(clean))
            wall = time.perf_counter() - t0
            if code != 0:
                sys.exit(f"uninterrupted {name} failed: {err}")
            expected = cmd.result(clean)
            stats = {"command": name, "wall_s": round(wall, 1), "killed": 0, "finished_first": 0, "identical": 0,
                     "left_by_kill": 0, "left_after_rerun": 0, "how": {}, "failures": []}
            for i in range(args.times):
                folder = work / f"{name}-{i}"
                folder.mkdir()
                cmd.prepare(folder)
                delay = rng.uniform(0, wall)
                killed, ran = run_killed(cmd.argv(folder), delay)
                stats["killed" if killed else "finished_first"] += 1
                if not killed:
                    wall = ran  # a shared machine got faster: kill inside the run's real duration from now on
                stats["left_by_kill"] += bool(leftovers(folder))
                code, err, how = rerun(cmd.argv(folder), cmd.resumable)
                if code != 0 and "already finished" in err:
                    code, how = 0, "nothing to do (finished before the kill)"
                stats["how"][how] = stats["how"].get(how, 0) + 1
                left = leftovers(folder)
                stats["left_after_rerun"] += bool(left)
                same = code == 0 and cmd.result(folder) == expected
                stats["identical"] += same
                if not same or left:
                    stats["failures"].append({"trial": i, "delay_s": round(delay, 2), "exit": code, "error": err, "left": left})
                if not args.keep:
                    shutil.rmtree(folder, ignore_errors=True)
                print(f"{name} {i + 1}/{args.times}: kill at {delay:.1f}s ({'killed' if killed else 'had finished'}), "
                      f"{how}: {'identical' if same else 'DIFFERENT'}{', left ' + str(left) if left else ''}", flush=True)
            table.append(stats)
    finally:
        if args.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"machine": f"{_cpu_name()}, {os.cpu_count()} CPUs",
                      "times": args.times, "results": table}, indent=2))
    return 0 if all(s["identical"] == args.times and not s["left_after_rerun"] for s in table) else 1


if __name__ == "__main__":
    sys.exit(main())
