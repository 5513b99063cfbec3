"""The report's figures, drawn with matplotlib and returned as PNG data URIs to inline in the page.

Each figure is a `matplotlib.figure.Figure` of its own, rendered by the Agg canvas: no pyplot, no global
state, nothing left open. Sizes and dpi are modest so a report with 14 findings stays well under a few MB.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import precision_recall_curve, roc_curve

DPI = 80
LINE = "#1f5fa8"
POINT = "#c0392b"
GREY = "#888888"
SMALL = 8


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas, no metadata so the same figure gives the same bytes)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _unit_axes(ax: Any, xlabel: str, ylabel: str) -> None:
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.04)
    # Fixed ticks and margins (no locator, no layout engine): each panel draws in a few hundredths of a second.
    ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
    ax.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
    ax.set_xlabel(xlabel, fontsize=SMALL)
    ax.set_ylabel(ylabel, fontsize=SMALL)
    ax.tick_params(labelsize=SMALL - 1)
    ax.grid(alpha=0.3)


def _no_curve(ax: Any, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=SMALL, color=GREY, transform=ax.transAxes)


def roc_pr(name: str, targets: np.ndarray, probs: np.ndarray, row: dict[str, Any]) -> bytes:
    """One finding's ROC curve (left) and precision-recall curve (right), the validation threshold marked on both."""
    fig = Figure(figsize=(5.6, 2.8))
    roc, pr = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.16, top=0.8, wspace=0.28)
    fig.suptitle(name, fontsize=SMALL + 2, fontweight="bold")
    _unit_axes(roc, "1 - specificity", "sensitivity")
    _unit_axes(pr, "recall (sensitivity)", "precision (PPV)")
    roc.plot([0, 1], [0, 1], color=GREY, lw=0.8, ls="--")
    if targets.min() == targets.max():
        _no_curve(roc, "n/a: one class only")
        _no_curve(pr, "n/a: one class only")
        return to_png(fig)
    fpr, tpr, _ = roc_curve(targets, probs)
    precision, recall, _ = precision_recall_curve(targets, probs)
    roc.plot(fpr, tpr, color=LINE, lw=1.4)
    pr.plot(recall, precision, color=LINE, lw=1.4, drawstyle="steps-post")
    pr.axhline(targets.mean(), color=GREY, lw=0.8, ls="--")
    roc.set_title(f"AUROC {_num(row.get('auroc'))}", fontsize=SMALL)
    pr.set_title(f"AUPRC {_num(row.get('auprc'))} (chance {targets.mean():.3f})", fontsize=SMALL)
    sens, spec, ppv = row.get("sensitivity"), row.get("specificity"), row.get("ppv")
    if sens is not None and spec is not None:
        roc.plot([1 - spec], [sens], "o", color=POINT, ms=5)
    if sens is not None and ppv is not None:
        pr.plot([sens], [ppv], "o", color=POINT, ms=5)
    return to_png(fig)


def reliability(name: str, bins: dict[str, Any], ece: float | None) -> bytes:
    """One finding's reliability diagram: observed frequency against mean predicted probability per bin."""
    fig = Figure(figsize=(2.8, 2.8))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.18, right=0.95, bottom=0.16, top=0.84)
    _unit_axes(ax, "mean predicted", "observed")
    ax.plot([0, 1], [0, 1], color=GREY, lw=0.8, ls="--")
    pred = np.array([np.nan if v is None else v for v in bins.get("mean_predicted", [])], dtype=np.float64)
    seen = np.array([np.nan if v is None else v for v in bins.get("observed", [])], dtype=np.float64)
    count = np.asarray(bins.get("count", []), dtype=np.float64)
    keep = np.isfinite(pred) & np.isfinite(seen)
    if keep.any():
        size = 12 + 60 * np.sqrt(count[keep] / count[keep].max())
        ax.plot(pred[keep], seen[keep], color=LINE, lw=1)
        ax.scatter(pred[keep], seen[keep], s=size, color=LINE, zorder=3)
    else:
        _no_curve(ax, "no predictions")
    ax.set_title(f"{name}\nECE {_num(ece)}", fontsize=SMALL)
    return to_png(fig)


def training_curves(rows: list[dict[str, float | None]]) -> bytes:
    """Loss, validation mean AUROC (plain, EMA, best so far) and learning rate by epoch."""
    fig = Figure(figsize=(10, 2.9))
    loss, auroc, lr = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.16, top=0.9, wspace=0.25)
    epoch = [r.get("epoch") for r in rows]
    series = (
        (loss, "train_loss", "train loss", LINE),
        (auroc, "val_mean_auroc", "validation", LINE),
        (auroc, "val_ema_mean_auroc", "validation, EMA weights", "#2e8b57"),
        (auroc, "best_val_mean_auroc", "best so far", GREY),
        (lr, "lr", "learning rate", LINE),
    )
    for ax, key, label, color in series:
        points = [(e, r.get(key)) for e, r in zip(epoch, rows, strict=True) if e is not None and r.get(key) is not None]
        if points:
            x, y = zip(*points, strict=True)
            style = "--" if key.startswith("best") else "-"
            ax.plot(x, y, marker="o", ms=3, lw=1.3, color=color, label=label, ls=style)
    for ax, title in ((loss, "training loss"), (auroc, "validation mean AUROC"), (lr, "learning rate")):
        ax.set_title(title, fontsize=SMALL + 1)
        ax.set_xlabel("epoch", fontsize=SMALL)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=SMALL - 1)
        ax.grid(alpha=0.3)
    if any(r.get("lr") for r in rows):
        lr.set_yscale("log")
    auroc.legend(fontsize=SMALL - 1)
    return to_png(fig)


Mark = tuple[str, float | None, float | None, float | None]  # label, mean, low, high


def forest(rows: list[Mark], overall: float | None, xlabel: str, reference: str | None = None) -> bytes:
    """A value with its interval per row (label, value, low, high) and a vertical reference line at `overall`.

    Subgroups: each group's mean AUROC against the overall mean ("all images"); a comparison: each finding's
    paired difference against 0 (`reference` names the line).
    """
    height = 0.9 + 0.28 * len(rows)
    fig = Figure(figsize=(6.5, height))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.3, right=0.98, bottom=0.55 / height, top=1 - 0.15 / height)
    y = np.arange(len(rows))[::-1]
    for yi, (_, mean, low, high) in zip(y, rows, strict=True):
        if mean is None:
            ax.text(
                0.5,
                yi,
                "n/a (too few positives)",
                va="center",
                fontsize=SMALL,
                color=GREY,
                transform=ax.get_yaxis_transform(),
            )
            continue
        if low is not None and high is not None:
            ax.plot([low, high], [yi, yi], color=LINE, lw=1.5)
        ax.plot([mean], [yi], "s", color=LINE, ms=5)
    if overall is not None:
        ax.axvline(overall, color=POINT, lw=1, ls="--", label=reference or f"all images {overall:.3f}")
        ax.legend(fontsize=SMALL - 1, loc="lower right")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=SMALL)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(xlabel, fontsize=SMALL)
    ax.tick_params(axis="x", labelsize=SMALL - 1)
    ax.grid(axis="x", alpha=0.3)
    return to_png(fig)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

