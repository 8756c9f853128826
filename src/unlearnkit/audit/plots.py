"""The audit's figures, rendered to PNG bytes with matplotlib's Agg canvas.

No pyplot: figures are built on ``matplotlib.figure.Figure`` with an Agg canvas, so nothing
here touches the global backend of a user's interactive session, and nothing needs a display.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np

__all__ = ["score_histograms", "roc_loglog", "per_class_accuracy", "compare_roc", "compare_bars"]

PART_COLORS = {"forget": "#d62728", "test": "#1f77b4", "retain": "#2ca02c", "val": "#9467bd"}
ROLE_STYLE = {"original": ("#7f7f7f", ":"), "unlearned": ("#d62728", "-"), "retrained": ("#1f77b4", "--")}
DPI = 100


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _bins(arrays: list[np.ndarray], n: int = 40) -> np.ndarray:
    vals = np.concatenate([a[np.isfinite(a)] for a in arrays])
    lo, hi = np.percentile(vals, [0.5, 99.5]) if vals.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n + 1)


def score_histograms(data: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]) -> bytes:
    """Rows: logit-scaled confidence and log10 loss; columns: models; curves: forget / test / retain.

    ``data[role][part] = (logit_scaled_confidence, cross_entropy)``.
    """
    roles = list(data)
    fig = _figure(4.2 * len(roles), 6.4)
    axes = fig.subplots(2, len(roles), squeeze=False, sharex="row")
    lsc_bins = _bins([v[0] for d in data.values() for v in d.values()])
    loss_bins = _bins([np.log10(np.maximum(v[1], 1e-12)) for d in data.values() for v in d.values()])
    for j, role in enumerate(roles):
        for part, (lsc, loss) in data[role].items():
            kw = dict(histtype="step", density=True, linewidth=1.6, color=PART_COLORS.get(part), label=f"{part} (n={len(lsc)})")
            axes[0, j].hist(np.clip(lsc, lsc_bins[0], lsc_bins[-1]), bins=lsc_bins, **kw)
            axes[1, j].hist(np.clip(np.log10(np.maximum(loss, 1e-12)), loss_bins[0], loss_bins[-1]), bins=loss_bins, **kw)
        axes[0, j].set_title(f"{role} model")
        axes[0, j].set_xlabel("logit-scaled confidence log(p_y / (1 - p_y))")
        axes[1, j].set_xlabel("log10 cross-entropy loss")
        for i in range(2):
            axes[i, j].legend(fontsize=8, loc="upper left" if i else "upper right")
            axes[i, j].grid(alpha=0.3)
        axes[0, j].set_ylabel("density")
        axes[1, j].set_ylabel("density")
    fig.suptitle("Per-example confidence and loss: forget vs test vs retain (values beyond the 0.5-99.5% range are clipped)",
                 fontsize=10)
    return _png(fig)


def _loglog_axes(ax, title: str, fpr_min: float) -> None:
    lo = max(min(fpr_min, 1e-2), 1e-5)
    grid = np.logspace(np.log10(lo), 0, 50)
    ax.plot(grid, grid, color="black", linewidth=0.8, alpha=0.5, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1.0)
    ax.set_ylim(lo, 1.02)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")


def roc_loglog(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray, float]]]) -> bytes:
    """One log-log ROC panel per attack; one curve per model (``curves[attack][role] = (fpr, tpr, auc)``)."""
    names = list(curves)
    ncol = min(3, max(1, len(names)))
    nrow = int(np.ceil(len(names) / ncol)) if names else 1
    fig = _figure(4.6 * ncol, 4.2 * nrow)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        fmin = 1.0
        for role, (fpr, tpr, auc) in curves[name].items():
            fpr, tpr = np.asarray(fpr), np.asarray(tpr)
            pos = fpr[fpr > 0]
            fmin = min(fmin, pos.min() if pos.size else 1.0)
            color, ls = ROLE_STYLE.get(role, (None, "-"))
            ax.plot(np.maximum(fpr, 1e-6), np.maximum(tpr, 1e-6), color=color, linestyle=ls, linewidth=1.6,
                    label=f"{role} (AUC {auc:.3f})")
        _loglog_axes(ax, name, fmin)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[len(names):]:
        ax.axis("off")
    return _png(fig)


def per_class_accuracy(pc: Mapping[str, Any]) -> bytes:
    """Per-class accuracy on test and forget, one marker series per model (a dot plot: the
    differences between models are a few points, which bars starting at 0 would hide)."""
    classes = [str(c) for c in pc["classes"]]
    roles = [r for r in ("original", "unlearned", "retrained") if r in pc]
    many = len(classes) > 20
    fig = _figure(min(12.0, max(7.0, 0.45 * len(classes) + 2)), 6.0)
    axes = fig.subplots(2, 1, squeeze=False).ravel()
    x = np.arange(len(classes))
    w = 0.22 if not many else 0.0
    markers = {"original": "s", "unlearned": "o", "retrained": "^"}
    for ax, part in zip(axes, ("test", "forget")):
        lo = 100.0
        for i, role in enumerate(roles):
            vals = np.array([np.nan if v is None else v for v in pc[role][part]], dtype=float)
            if np.isfinite(vals).any():
                lo = min(lo, float(np.nanmin(vals)))
            ax.plot(x + (i - (len(roles) - 1) / 2) * w, vals, linestyle="none", marker=markers[role], markersize=6 if not many else 3,
                    color=ROLE_STYLE[role][0], label=role, alpha=0.9)
        ax.set_xticks(x)
        ax.set_xticklabels(classes, rotation=0 if not many else 90, fontsize=8 if not many else 6)
        ax.set_xlim(-0.6, len(classes) - 0.4)
        ax.set_ylabel("accuracy %")
        ax.set_ylim(max(0.0, lo - 5.0), 101.5)
        ax.set_title(f"per-class accuracy on {part}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left", ncol=len(roles), framealpha=0.9)
    return _png(fig)


def compare_roc(audits: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Log-log ROC per attack with one curve per audited run (the unlearned model of each)."""
    panels: dict[str, dict[str, tuple]] = {}
    for run, a in audits.items():
        u = "unlearned"
        for score, res in a["threshold_attacks"][u].items():
            panels.setdefault(f"threshold ({score}): forget vs val", {})[run] = res
        for name, res in (a.get("reference_attacks") or {}).get(u, {}).items():
            label = {"lira_offline": "LiRA offline", "lira_online": "LiRA online", "rmia_offline": "RMIA offline"}.get(name, name)
            panels.setdefault(f"{label}: {res.get('pair', '')}", {})[run] = res
    names = list(panels)
    ncol = min(3, max(1, len(names)))
    nrow = int(np.ceil(len(names) / ncol)) if names else 1
    fig = _figure(4.6 * ncol, 4.2 * nrow)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    colors = [f"C{i}" for i in range(10)]
    for ax, name in zip(axes, names):
        fmin = 1.0
        for i, (run, res) in enumerate(panels[name].items()):
            roc = res.get("roc") or {}
            fpr, tpr = np.asarray(roc.get("fpr", [])), np.asarray(roc.get("tpr", []))
            if fpr.size:
                fmin = min(fmin, fpr[fpr > 0].min())
                ax.step(fpr, np.maximum(tpr, 1e-6), where="post", color=colors[i % 10], linewidth=1.5,
                        label=f"{run} (AUC {res['auc']:.3f})")
        _loglog_axes(ax, name, fmin)
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(names):]:
        ax.axis("off")
    return _png(fig)


def compare_bars(rows: list[Mapping[str, Any]]) -> bytes:
    """UA / RA / TA / MIA-efficacy per run (grouped bars) and, when known, average gap vs time ratio."""
    metrics = ["UA", "RA", "TA", "MIA-efficacy"]
    has_tradeoff = any(r.get("avg gap") is not None and r.get("time ratio") for r in rows)
    fig = _figure(max(7.0, 1.1 * len(rows) + 3), 4.2 * (2 if has_tradeoff else 1))
    axes = fig.subplots(2 if has_tradeoff else 1, 1, squeeze=False).ravel()
    x = np.arange(len(rows))
    w = 0.8 / len(metrics)
    for i, m in enumerate(metrics):
        vals = [r.get(m) if isinstance(r.get(m), (int, float)) else np.nan for r in rows]
        axes[0].bar(x + (i - 1.5) * w, np.nan_to_num(vals), width=w, label=m, color=f"C{i}")
    axes[0].set_xticks(x)
    axes[0].set_xticklabels([r["run"] for r in rows], rotation=20, ha="right", fontsize=8)
    axes[0].set_ylabel("%")
    axes[0].set_ylim(0, 122)
    axes[0].set_yticks(range(0, 101, 20))
    axes[0].legend(fontsize=8, ncol=4, loc="upper center", frameon=False)
    axes[0].grid(axis="y", alpha=0.3)
    axes[0].set_title("accuracy-based metrics per run", fontsize=10)
    if has_tradeoff:
        ax = axes[1]
        ratios = []
        for i, r in enumerate(rows):
            if r.get("avg gap") is not None and r.get("time ratio"):
                ratios.append(r["time ratio"])
                ax.scatter(r["time ratio"], r["avg gap"], color=f"C{i % 10}", s=40)
                ax.annotate(r["run"], (r["time ratio"], r["avg gap"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        if ratios:
            # Explicit limits before the log scale: autoscaled ones can collapse to one value (a CI run
            # warned "identical low and high xlims" here), and a log axis needs a span.
            ax.set_xlim(min(ratios) / 2, max(ratios) * 2)
        ax.set_xscale("log")
        ax.set_xlabel("time ratio to the reference (log)")
        ax.set_ylabel("average gap to retraining (points)")
        ax.set_title("closeness to retraining vs cost (lower left is better)", fontsize=10)
        ax.grid(alpha=0.3, which="both")
    return _png(fig)
