"""docs/methods.md's digits table: the digits preset as it is (its own epochs), seed 0, every method on
random:0.1 and class:3, plus ssd with alpha 100 on class:3. Usage: python benchmarks/digits_methods_table.py [OUT]."""
import json
import sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from unlearnkit.config import resolve_config
from unlearnkit.training.pipeline import train
from unlearnkit.methods import forget_run, list_methods

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/digits-methods")
cfg = resolve_config("digits")
if not (out / "orig" / "metrics.json").is_file():
    train(cfg, out / "orig")
m = json.loads((out / "orig" / "metrics.json").read_text())
print("EPOCHS", cfg.train.epochs, "ORIG", {k: v for k, v in m.items() if not isinstance(v, (dict, list))})
names = [x if isinstance(x, str) else getattr(x, "name", x) for x in list_methods()]
print("METHODS", names)
rows = []
for name in names:
    cells = []
    for spec in ("random:0.1", "class:3"):
        r = forget_run(out / "orig", name, spec, out / f"{name}-{spec.replace(':', '_')}")
        cells.append((r["unlearn_seconds"], r["retain_acc"], r["forget_acc"], r["test_acc"]))
    rows.append(f"| {name} | {cells[0][0]:.2f} | {cells[0][1]:.2f} / {cells[0][2]:.2f} / {cells[0][3]:.2f} | "
                f"{cells[1][0]:.2f} | {cells[1][1]:.2f} / {cells[1][2]:.2f} / {cells[1][3]:.2f} |")
    print(rows[-1], flush=True)
r = forget_run(out / "orig", "ssd", "class:3", out / "ssd-a100", hparams={"alpha": 100})
print("SSD_ALPHA100", r["retain_acc"], r["forget_acc"], r["test_acc"])
