"""report.html of `cxr14 compare`: per comparison a forest plot of the paired differences and the table behind it.

Built from comparison.json alone, with the same page blocks as the evaluation report (`page`), so it opens
from disk with nothing fetched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxr14.files import write_text
from cxr14.judging.report import plots
from cxr14.judging.report.page import Html, Section, document, esc, figure, num, para, table


def _p(value: float | None) -> str:
    return "n/a" if value is None else ("<0.0001" if value < 1e-4 else f"{value:.4f}")


def _short(name: str) -> str:
    """A model's name for a title: its file and folder, not the whole path."""
    path = Path(name.split(",")[0])
    return f"{path.parent.name}/{path.name}" + (" (ensemble)" if "," in name else "")


def _section(i: int, c: dict[str, Any]) -> Section:
    rows = [(name, r["difference"], r["ci_low"], r["ci_high"]) for name, r in c["per_class"].items()
            if r["difference"] is not None]  # fmt: skip
    m = c["mean"]
    if m["difference"] is not None:
        rows.append(("mean AUROC", m["difference"], m["ci_low"], m["ci_high"]))
    title = f"{_short(c['b'])} vs {_short(c['a'])}"
    png = plots.forest(rows, 0.0, "AUROC difference B - A, with its 95% paired patient-bootstrap interval",
                       "no difference")
    cells = [
        (name, num(r["auroc_a"], 4), num(r["auroc_b"], 4), num(r["difference"], 4),
         "n/a" if r["ci_low"] is None else f"{r['ci_low']:+.4f} to {r['ci_high']:+.4f}", _p(r["p_value"]),
         _p(r.get("p_holm")))
        for name, r in [*c["per_class"].items(), ("mean AUROC", m)]
    ]  # fmt: skip
    body = Html(
        para(f"Model B: {c['b']}. Baseline A: {c['a']}.", "muted")
        + figure(plots.data_uri(png), f"Forest plot of the AUROC differences of {c['b']} against {c['a']}",
                 "Each finding's B - A with its 95% interval from one paired patient bootstrap; the diamond is the "
                 "mean AUROC. An interval that crosses the dashed line at 0 does not show a difference.", wide=True)
        + table("AUROC of each model, the paired difference, DeLong's p-value and Holm's adjustment over the findings "
                "(the mean's p-value is the paired bootstrap's)", ["finding", "AUROC A", "AUROC B", "B - A",
                "95% CI of B - A", "p (DeLong)", "p (Holm)"], cells)
    )  # fmt: skip
    return Section(f"comparison-{i + 1}", title, body)


def render(result: dict[str, Any]) -> str:
    """The page's HTML for a comparison.json."""
    a = result["alignment"]
    models = "; ".join(f"{esc(m['name'])} ({esc(m['how'])})" for m in result["models"])
    notes = [
        f"{result['n_images']:,} images of {result['n_patients']:,} patients of the {result['split']} split, the same "
        f"images for every model. Intervals: one paired bootstrap over patients "
        f"({result['bootstrap']['n_resamples']:,} resamples, seed {result['bootstrap']['seed']}): each resample "
        f"scores every model on the same patients.",
    ]
    if a.get("intersect"):
        notes.append(f"Compared on the {a['common']:,} images common to all models (--intersect): "
                     + ", ".join(f"{k}: {v:,}" for k, v in a["images"].items()) + ".")  # fmt: skip
    if a.get("findings_left_out"):
        notes.append("Findings not predicted by every model, left out: " + ", ".join(a["findings_left_out"]) + ".")
    notes.append("DeLong's test treats images as independent; a patient's follow-ups are not, so its p-values can "
                 "read a little small. The paired patient-bootstrap interval respects patients.")  # fmt: skip
    header = Html(
        f"<h1>cxr14 comparison on the {esc(result['split'])} split</h1>"
        + para(f"Models, the first the baseline: {models}.")
        + "".join(para(n, "muted") for n in notes)
    )
    sections = [_section(i, c) for i, c in enumerate(result["comparisons"])]
    return document(f"cxr14 comparison: {len(result['models'])} models on the {result['split']} split", header,
                    sections)  # fmt: skip


def write_comparison_report(out: Path, result: dict[str, Any]) -> Path:
    path = out / "report.html"
    write_text(path, render(result))
    return path
