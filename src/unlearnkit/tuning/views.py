"""Terminal views of the tuned defaults (`unlearnkit methods NAME`)."""

from __future__ import annotations

from unlearnkit.cli.tables import console, print_table
from unlearnkit.tuning.defaults import all_entries


def print_tuned_defaults(method: str) -> None:
    rows = [[e["preset"], e["kind"], e["recipe_hash"], ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                                  for k, v in e["values"].items()),
             (e.get("objective") or {}).get("avg_gap"), ", ".join(map(str, e["seeds"])), e["command"]]
            for e in all_entries(method)]
    if not rows:
        console.print(f"tuned defaults: none for {method}; every run uses the paper defaults above")
        return
    print_table(f"tuned defaults for {method} (they apply when a run's preset, recipe hash and forget kind match; "
                "otherwise the paper defaults above; --set overrides both)",
                ["preset", "kind", "recipe hash", "values", "avg gap", "tuning seeds", "made by"], rows)
