"""Terminal views of the tuned defaults (`unlearnkit methods NAME`)."""

from __future__ import annotations

from unlearnkit.tables import console
from unlearnkit.tuning.defaults import all_entries, revision_note
from unlearnkit.tuning.scenarios import FALLBACK_KIND


def print_tuned_defaults(method: str) -> None:
    found = all_entries(method)
    if not found:
        console.print(f"tuned defaults: none for {method}; every run uses the paper defaults above")
        return
    # One entry per line, unwrapped: the command is meant to be copied.
    console.print(f"tuned defaults for {method} (used when a run's preset, recipe hash and forget kind match; "
                  "otherwise the paper defaults above; --set overrides both):", soft_wrap=True)
    for e in found:
        values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in e["values"].items())
        gap = (e.get("objective") or {}).get("avg_gap")
        older = revision_note(method, e)
        console.print(f"  {e['id']}: {values}; avg gap {gap} on tuning seeds {', '.join(map(str, e['seeds']))}; "
                      + (f"{older}; " if older else "")
                      + f"made by: {e['command']}", soft_wrap=True, markup=False, highlight=False)
    # Kinds served by another kind's entry: say so, rather than let "no entry" read as paper defaults.
    for kind, fallback in FALLBACK_KIND.items():
        for e in found:
            if e["kind"] == fallback and not any(o["kind"] == kind and (o["preset"], o["recipe_hash"]) == (e["preset"], e["recipe_hash"])
                                                 for o in found):
                console.print(f"  {e['preset']}/{kind}: no entry of its own; {kind} requests take {e['id']}",
                              soft_wrap=True, markup=False, highlight=False)
