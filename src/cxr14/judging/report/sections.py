"""The report's sections, each from the parts of the evaluation it needs, each saying so when a part is missing."""

from __future__ import annotations

from typing import Any

from cxr14.judging.report import plots
from cxr14.judging.report.page import (
    Html,
    Section,
    details,
    esc,
    figure,
    grid,
    interval,
    num,
    para,
    pct,
    table,
    with_interval,
)
from cxr14.judging.report.published import LEAKAGE_AUDIT_ABOVE, NIH, OFFICIAL_TEST_IMAGES, Benchmark, benchmark_for
from cxr14.judging.report.sources import ReportInputs, label_names, read_gallery_image

NOT_A_DEVICE = "Research tool, not a diagnostic device."
NOT_A_DEVICE_WHY = (
    "These figures describe a model on a dataset whose labels were mined from radiology reports; they are not a "
    "clinical validation and must not guide the care of a patient."
)


def level_text(metrics: dict[str, Any]) -> str:
    boot = metrics.get("bootstrap") or {}
    level = boot.get("level", 0.95)
    return f"{level:.0%} patient-bootstrap interval, {boot.get('n_resamples', '?')} resamples"


def ci(result: dict[str, Any]) -> tuple[float | None, float | None]:
    """A result's mean_auroc_ci as (low, high), (None, None) where it is missing."""
    low, high = [*(result.get("mean_auroc_ci") or []), None, None][:2]
    return low, high


def scored_total(metrics: dict[str, Any]) -> int:
    """Images in the split before any --max_test_samples subset (the scored images when there was none)."""
    sample = metrics.get("sample") or {}
    return int(sample.get("of") or metrics.get("n_images") or 0)


def comparability(metrics: dict[str, Any]) -> tuple[str, bool]:
    """(how this evaluation's mean AUROC relates to the published figures, whether that is a warning)."""
    split, total, mean = metrics.get("split"), scored_total(metrics), metrics.get("mean_auroc")
    if split != "test":
        return (
            f"This is the {split} split, not a test split: validation reads higher than test (NIH's test "
            "split is sicker) and is not comparable with published test figures.",
            True,
        )
    if metrics.get("sample"):
        return (
            f"Scored on a random subset of the test split, not all of it: published figures use the full "
            f"official test list ({OFFICIAL_TEST_IMAGES:,} images); run `cxr14 evaluate` for the whole split.",
            True,
        )
    lists = (metrics.get("data") or {}).get("lists")
    if lists is not None and lists != "official":
        return (
            f"Test split from a {lists}, not NIH's official lists: not comparable with the published "
            "official-split figures below.",
            True,
        )
    if total != OFFICIAL_TEST_IMAGES:
        return (
            f"{total:,} test images, not the {OFFICIAL_TEST_IMAGES:,} of the official test list: a seeded "
            "patient-wise split (the data folder had no official lists) or a list with images skipped; the "
            "run's log says which ('split: official lists' or 'seeded patient-wise split'). Not comparable with "
            "the published official-split figures unless the lists were the official ones.",
            True,
        )
    if mean is not None and mean > LEAKAGE_AUDIT_ABOVE:
        return (
            f"Mean AUROC {mean:.3f} on the official test list is above {LEAKAGE_AUDIT_ABOVE}: audit for leakage "
            "(patients in both splits, test images in pre-training) before believing it.",
            True,
        )
    return "Official test list, all of it: comparable with the official-split results below.", False


def header(inputs: ReportInputs) -> Html:
    """Title, the headline figure with its interval, the not-a-device notice and any warning about the sample."""
    m = inputs.metrics
    card = m.get("model") or {}
    defined = sum(1 for row in m["per_class"].values() if row.get("auroc") is not None)
    low, high = ci(m)
    parts = [
        f"<h1>{esc(card.get('model', 'model'))} on the {esc(m.get('split', '?'))} split</h1>",
        f'<p class="headline">Mean AUROC <strong>{esc(with_interval(m.get("mean_auroc"), low, high))}</strong> '
        f'<span class="muted">({esc(level_text(m))}; {defined} of {len(m["per_class"])} findings defined; '
        f"{m.get('n_images', 0):,} images of {m.get('n_patients', 0):,} patients)</span></p>",
        para(
            f"cxr14 {m.get('cxr14_version', '?')} evaluation, {m.get('created', 'date unknown')}; "
            + (f"predictions file {card['predictions']}." if card.get("predictions") else
               f"checkpoint {card.get('checkpoint', 'unknown')}."),
            "muted",
        ),
        f'<p class="notice" role="note"><strong>{NOT_A_DEVICE}</strong> {esc(NOT_A_DEVICE_WHY)}</p>',
    ]
    if m.get("sample"):
        note = esc(m["sample"]["note"])
        parts.append(f'<p class="warn" role="note"><strong>Subset of the split.</strong> {note}</p>')
    if m.get("split") == "val" and m.get("thresholds"):
        parts.append(
            para(
                "The thresholds and temperatures were chosen on this same validation split: its operating "
                "points and calibration read better than they will on new images.",
                "warn",
            )
        )
    return Html("".join(parts))


OPERATING = ("threshold", "sensitivity", "specificity", "ppv", "npv", "f1", "ece")
FINDING_COLUMNS = ("finding", "AUROC", "interval", "AUPRC", "prevalence", "positives", "threshold", "sensitivity",
                   "specificity", "PPV", "NPV", "F1", "ECE")  # fmt: skip


def per_finding(inputs: ReportInputs) -> Section:
    m = inputs.metrics
    th = m.get("thresholds") or {}
    rows = [
        [name, num(r.get("auroc")), interval(r.get("ci_low"), r.get("ci_high")), num(r.get("auprc")),
         pct(r.get("prevalence")), r.get("n_pos", ""), *(num(r.get(k)) for k in OPERATING)]
        for name, r in m["per_class"].items()
    ]  # fmt: skip
    low, high = ci(m)
    rows.append(["mean", num(m.get("mean_auroc")), interval(low, high), *[""] * 10])
    unknown = {name: r.get("n_unknown", 0) for name, r in m["per_class"].items() if r.get("n_unknown")}
    if th:
        rule = (
            f"Thresholds chosen on {th.get('chosen_on', 'validation')} ({th.get('threshold_rule', '?')} rule), "
            f"a finding called when {th.get('decision', 'probability >= threshold')}."
        )
    else:
        rule = ("A predictions file brings no thresholds" if from_file(m) else "No thresholds stored with this "
                "model") + ": no operating points (n/a)."
    body = [
        table(
            f"AUROC per finding with its {level_text(m)}; operating points at the validation thresholds",
            FINDING_COLUMNS,
            rows,
        ),
        para(
            f"{rule} n/a: undefined (one class only, or no threshold). The mean is over the defined findings. "
            "ECE: expected calibration error, 10 equal-width bins.",
            "muted",
        ),
    ]
    if unknown:
        body.append(para(
            "Unknown labels (left out of that finding's AUROC, interval, thresholds and calibration; prevalence is "
            "among the known ones): " + ", ".join(f"{name} {n:,}" for name, n in unknown.items()) + ".", "muted",
        ))  # fmt: skip
    return Section("findings", "Per finding", Html("".join(body)))


def curves(inputs: ReportInputs) -> Section:
    part = inputs.predictions
    if part.value is None:
        return Section("curves", "ROC and precision-recall curves", para(f"No curves: {part.missing}", "warn"))
    cards = []
    for j, name in enumerate(label_names(inputs.metrics)):
        row = inputs.metrics["per_class"].get(name, {})
        keep = part.value.targets[:, j] >= 0  # the known labels
        png = plots.roc_pr(name, part.value.targets[keep, j], part.value.probs[keep, j], row)
        alt = (
            f"ROC and precision-recall curves for {name}: AUROC {num(row.get('auroc'))}, AUPRC "
            f"{num(row.get('auprc'))}, operating point sensitivity {num(row.get('sensitivity'))}, specificity "
            f"{num(row.get('specificity'))}, PPV {num(row.get('ppv'))}."
        )
        cards.append(figure(plots.data_uri(png), alt))
    intro = para(
        f"From {part.source.name}. Dashed: chance (the diagonal; the prevalence for precision). Red dot: "
        "the operating point at the validation threshold.",
        "muted",
    )
    return Section("curves", "ROC and precision-recall curves", Html(intro + grid(cards)))


def from_file(metrics: dict[str, Any]) -> bool:
    """Whether the evaluation scored a predictions file (no model: no training, no gate)."""
    return bool((metrics.get("model") or {}).get("predictions"))


def training(inputs: ReportInputs) -> Section | None:
    if from_file(inputs.metrics):
        return None
    part = inputs.history
    if part.value is None:
        return Section("training", "Training curves", para(part.missing, "warn"))
    rows = part.value
    png = plots.training_curves(rows)
    best = max(
        (r for r in rows if r.get("val_mean_auroc") is not None), key=lambda r: r["val_mean_auroc"], default=None
    )
    summary = f"{len(rows)} epoch(s)"
    if best is not None:
        summary += f"; best validation mean AUROC {best['val_mean_auroc']:.3f} at epoch {best['epoch']:.0f}"
    keys = [k for k in rows[0] if k != "epoch"]
    history = table(
        "Training history, one row per epoch",
        ["epoch", *keys],
        [[f"{r['epoch']:.0f}" if r.get("epoch") is not None else "", *(_cell(r.get(k)) for k in keys)] for r in rows],
    )
    body = [
        figure(plots.data_uri(png), f"Training curves: {summary}.", f"{summary}. From {part.source}.", wide=True),
        details("The history table (metrics.csv)", history),
    ]
    return Section("training", "Training curves", Html("".join(body)))


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")


def subgroups(inputs: ReportInputs) -> Section:
    m = inputs.metrics
    sub = m.get("subgroups") or {}
    groups = sub.get("groups") or {}
    rows, marks = [], []
    for attribute, by in groups.items():
        for group, r in by.items():
            low, high = ci(r)
            defined = sum(1 for c in (r.get("per_class") or {}).values() if c.get("auroc") is not None)
            n_images, n_patients = f"{r.get('n_images', 0):,}", f"{r.get('n_patients', 0):,}"
            of = f"{defined} of {len(r.get('per_class') or {})}"
            rows.append(
                [f"{attribute}: {group}", n_images, n_patients, num(r.get("mean_auroc")), interval(low, high), of]
            )
            marks.append((f"{attribute}: {group} (n={r.get('n_images', 0):,})", r.get("mean_auroc"), low, high))
    if not rows:
        text = "No subgroup results in this evaluation." if "groups" not in sub else \
            "This data carries no sex, age or view for its films: there are no subgroups to compare."  # fmt: skip
        return Section("subgroups", "Subgroups", para(text, "warn" if "groups" not in sub else "muted"))
    alt = "Mean AUROC with interval per subgroup: " + "; ".join(f"{r[0]} {r[3]} [{r[4]}]" for r in rows) + "."
    plot = (
        figure(
            plots.data_uri(plots.forest(marks, m.get("mean_auroc"), f"mean AUROC ({level_text(m)})")), alt, wide=True
        )
        if any(mark[1] is not None for mark in marks)
        else ""
    )
    body = [
        para(
            "By sex, age band and view position, each group on its own images with its own patient resamples "
            f"(CheXclusion's gaps). A finding with fewer than {sub.get('min_positives', '?')} positives or negatives "
            "in a group is undefined there and left out of that group's mean.",
            "muted",
        ),
        plot,
        table(
            "Mean AUROC per subgroup",
            ["group", "images", "patients", "mean AUROC", "interval", "findings defined"],
            rows,
        ),
    ]
    return Section("subgroups", "Subgroups", Html("".join(body)))


def calibration(inputs: ReportInputs) -> Section:
    m = inputs.metrics
    cal = m.get("calibration") or {}
    temps, before = cal.get("temperature"), cal.get("ece_before_temperature")
    bins = (cal.get("reliability") or {}).get("per_class") or {}
    rows = []
    for k, name in enumerate(label_names(m)):
        ece = m["per_class"].get(name, {}).get("ece")
        rows.append([name, num(temps[k]) if temps else "none", num(before[k]) if before else "n/a", num(ece)])
    intro = (
        "Per-finding temperatures fitted on validation (probability = sigmoid(logit / T)); ECE before and after."
        if temps
        else "No temperature with this model: probabilities are the plain sigmoid of the logits."
    )
    cards = []
    for name in (n for n in label_names(m) if n in bins):
        ece = m["per_class"].get(name, {}).get("ece")
        alt = f"Reliability diagram for {name}: observed frequency against mean predicted probability, ECE {num(ece)}."
        cards.append(figure(plots.data_uri(plots.reliability(name, bins[name], ece)), alt))
    explain = (
        "Reliability diagrams: one dot per probability bin (size: images in it); on the dashed diagonal a "
        "predicted probability comes true that often."
    )
    body = [
        para(intro, "muted"),
        table("Calibration per finding", ["finding", "temperature", "ECE before temperature", "ECE"], rows),
        para(explain, "muted") if cards else para("No reliability bins.", "warn"),
        grid(cards, small=True),
    ]
    return Section("calibration", "Calibration", Html("".join(body)))


def unusual(inputs: ReportInputs) -> Section | None:
    """How many films the out-of-distribution gate flags, and the AUROCs without them."""
    title = "Films unlike the training data"
    if from_file(inputs.metrics):
        return None
    ood = inputs.metrics.get("ood")
    if not ood:
        return Section("ood", title, para("This model carries no out-of-distribution gate (cxr14 fit_gate adds it): "
                                          "no film of the split was checked.", "warn"))  # fmt: skip
    per = ood.get("per_class_unflagged") or {}
    rows = [[name, num(inputs.metrics["per_class"].get(name, {}).get("auroc")), num(per.get(name))]
            for name in label_names(inputs.metrics)]  # fmt: skip
    rows.append(["mean", num(ood.get("mean_auroc_all")), num(ood.get("mean_auroc_unflagged"))])
    body = [
        para(f"The out-of-distribution gate (distance of the film's statistics at several of the model's stages "
             f"from the training films', its threshold near the 99th percentile of films like them) flags "
             f"{ood['n_flagged']:,} films of this split ({pct(ood['share_flagged'])}) as unlike the training data.",
             "headline"),
        table("AUROC of all films, and without the flagged ones", ["finding", "all films", "without the flagged"],
              rows),
    ]  # fmt: skip
    return Section("ood", title, Html("".join(body)))


def sources(inputs: ReportInputs) -> Section | None:
    """Mixed datasets: every source's AUROCs beside the pooled ones (a finding a source lacks is blank there)."""
    per = inputs.metrics.get("sources")
    if not per:
        return None
    m = inputs.metrics
    names = label_names(m)
    head = ["finding", "pooled", *(f"{s} ({v['dataset']})" for s, v in per.items())]

    def cell(result: dict[str, Any], name: str) -> str:
        row = (result.get("per_class") or {}).get(name) or {}
        return with_interval(row.get("auroc"), row.get("ci_low"), row.get("ci_high"))

    rows = [[name, cell(m, name), *(cell(v, name) for v in per.values())] for name in names]
    rows.append(["mean", with_interval(m.get("mean_auroc"), *(m.get("mean_auroc_ci") or [None, None])),
                 *(with_interval(v.get("mean_auroc"), *(v.get("mean_auroc_ci") or [None, None]))
                   for v in per.values())])  # fmt: skip
    counts = ", ".join(f"{s}: {v['n_images']:,} films of {v['n_patients']:,} patients" for s, v in per.items())
    body = [
        para(f"This split pools {len(per)} datasets ({counts}). Each source keeps its own split; a finding a source "
             f"does not label is unknown for its films, so its AUROC there is blank and the pooled figure is that "
             f"of the sources that have it.", "headline"),
        table(f"AUROC by source ({level_text(m)})", head, rows),
    ]  # fmt: skip
    val = m.get("validation_sources") or {}
    if val:
        means = [[s, v["dataset"], f"{v['n_images']:,}", with_interval(v.get("mean_auroc"),
                  *(v.get("mean_auroc_ci") or [None, None]))] for s, v in val.items()]  # fmt: skip
        body.append(table("Validation (where the thresholds were chosen): mean AUROC by source",
                          ["source", "dataset", "films", "mean AUROC"], means))  # fmt: skip
    return Section("sources", "By source dataset", Html("".join(body)))


def adjudicated(inputs: ReportInputs) -> Section | None:
    adj = inputs.metrics.get("adjudicated")
    title = "Radiologists' reads"
    if not adj and not is_nih(inputs.metrics):
        return None  # Google's adjudicated labels are of NIH's films
    if not adj:
        return Section(
            "radiologists",
            title,
            para(
                "Not scored: Google's adjudicated labels (google2019_nih-chest-xray-labels.csv) were not in the data "
                "folder, none of their test images was scored, or this is not the test split.",
                "muted",
            ),
        )
    rows = []
    for name, r in (adj.get("per_finding") or {}).items():
        rad, nlp = r.get("radiologists") or {}, r.get("nlp") or {}
        rows.append(
            [
                name,
                f"{r.get('n_images', 0):,}",
                f"{r.get('n_patients', 0):,}",
                rad.get("n_pos", ""),
                with_interval(rad.get("auroc"), rad.get("ci_low"), rad.get("ci_high")),
                nlp.get("n_pos", ""),
                with_interval(nlp.get("auroc"), nlp.get("ci_low"), nlp.get("ci_high")),
            ]
        )
    body = [
        para(
            "The same test images scored twice: against radiologists' adjudicated reads (Majkowska et al., "
            "Radiology 2020) and against NIH's NLP-mined labels. The gap shows how much of the error is label "
            "noise. Nodule or mass: the higher of the Nodule and Mass probabilities.",
            "muted",
        ),
        table(
            "AUROC against radiologists and against NLP labels",
            [
                "finding",
                "images",
                "patients",
                "positives (radiologists)",
                "AUROC vs radiologists",
                "positives (NLP)",
                "AUROC vs NLP labels",
            ],
            rows,
        ),
    ]
    return Section("radiologists", title, Html("".join(body)))


def localisation(inputs: ReportInputs) -> Section | None:
    loc = inputs.metrics.get("localisation")
    title = "Localisation"
    if not loc and not is_nih(inputs.metrics):
        return None  # boxes come with NIH's box list (or a phantom's)
    if not loc:
        return Section(
            "localisation",
            title,
            para("No localisation scores in this evaluation (they need NIH's box list, BBox_List_2017.csv).", "muted"),
        )
    rows = [
        [name, r.get("n_boxes", ""), num(r.get("hit_rate")), num(r.get("chance")), num(r.get("mean_iou"))]
        for name, r in (loc.get("per_class") or {}).items()
    ]
    rows.append(["mean", "", num(loc.get("mean_hit_rate")), num(loc.get("mean_chance")), num(loc.get("mean_iou"))])
    body = [
        para(
            f"Does the heatmap point into the radiologist's box? Rule: {loc.get('threshold_rule', 'not stated')}. "
            "Chance: the hit rate of a point drawn at random over the image.",
            "muted",
        ),
        table(
            "Localisation against NIH's radiologist boxes", ["finding", "boxes", "hit rate", "chance", "mean IoU"], rows
        ),
        gallery(inputs, loc.get("gallery") or []),
    ]
    return Section("localisation", title, Html("".join(body)))


def gallery(inputs: ReportInputs, items: list[dict[str, Any]]) -> Html:
    """The heatmap overlays (box already drawn on them), inlined; a missing file is named, not fatal."""
    if not items:
        return para("No heatmap gallery in this evaluation.", "muted")
    cards = []
    for item in items:
        verdict = "hit" if item.get("hit") else "miss"
        caption = f"{item.get('image', '?')}: {item.get('finding', '?')}, {verdict}, IoU {num(item.get('iou'))}"
        found = read_gallery_image(inputs.folder, str(item.get("file", "")))
        if found is None:
            cards.append(
                f'<figure class="card"><figcaption>{esc(caption)}: overlay file '
                f"{esc(item.get('file', '?'))} missing from the folder</figcaption></figure>"
            )
            continue
        alt = f"Heatmap for {item.get('finding', '?')} over {item.get('image', '?')} with the radiologist's box: "
        alt += f"{verdict}."
        cards.append(figure(plots.data_uri(*found), alt, caption))
    return Html("<h3>Heatmaps on boxed images</h3>" + grid(cards, small=True))


CARD_CONFIG = (
    "csv",
    "val_fraction",
    "max_train_samples",
    "max_test_samples",
    "batch_size",
    "num_epochs",
    "learning_rate",
    "weight_decay",
    "loss",
    "sched",
    "warmup_epochs",
    "ema",
    "augment",
    "aug_strength",
    "hflip",
    "calibrate",
    "precision",
    "seed",
)


def model_card(inputs: ReportInputs) -> Section:
    m = inputs.metrics
    card = m.get("model") or {}
    config = card.get("config") or {}
    data = m.get("data") or {}
    listed = data.get("lists") or "not recorded"
    if "lists" not in data and scored_total(m) == OFFICIAL_TEST_IMAGES and m.get("split") == "test":
        listed = "official (the test list's 25,596 images)"
    scored = [
        ["data folder", data.get("data_dir") or config.get("data_dir", "unknown")],
        ["split scored", f"{m.get('split', '?')}: {m.get('n_images', 0):,} images of {m.get('n_patients', 0):,} "
                         f"patients"],
        ["lists", listed],
        ["patients", data.get("patients", "as the data names them")],
    ]  # fmt: skip
    if card.get("predictions"):  # `cxr14 evaluate --predictions`: a file, not a model
        rows = [["predictions file", card["predictions"]], ["sha256", card.get("sha256", "?")],
                ["columns scored", ", ".join(card.get("labels") or [])], *scored,
                ["evaluated", m.get("created", "unknown")], ["cxr14 version", m.get("cxr14_version", "unknown")]]
        return Section("card", "What was scored", table("The predictions file", ["item", "value"], rows, 99))
    rows = [
        ["model", card.get("model", "unknown")],
        ["image size", f"{card.get('image_size', '?')} px, {card.get('in_chans', '?')} channel(s)"],
        ["weights", f"{card.get('weights', '?')} of epoch {card.get('epoch', '?')}"],
        ["started from", "ImageNet-pretrained (timm)" if card.get("pretrained") else "random initialisation"],
        ["validation mean AUROC", num(card.get("validation_mean_auroc"))],
        ["checkpoint", card.get("checkpoint", "unknown")],
        ["trained", card.get("trained", "unknown")],
        *scored,
        *[[f"config: {k}", _plain(config[k])] for k in CARD_CONFIG if k in config],
        ["evaluated", m.get("created", "unknown")],
        ["cxr14 version", m.get("cxr14_version", "unknown")],
    ]
    full = table("The full training configuration", ["option", "value"], [[k, _plain(v)] for k, v in config.items()])
    body = [table("Model card", ["item", "value"], rows, numeric_from=99), details("Every training option", full)]
    return Section("card", "Model card", Html("".join(body)))


def _plain(value: Any) -> str:
    return "none" if value is None else str(value)


def published(inputs: ReportInputs) -> Section | None:
    """The published results measured on the same findings and films, beside this evaluation's; left out where none
    is known (a figure from another dataset would mislead even with a caveat under it)."""
    m = inputs.metrics
    bench = benchmark_for(m)
    if bench is None:
        return None
    rows = [[p.model, p.split, *p.figures, p.source] for p in bench.rows]
    rows.append([f"this evaluation ({(m.get('model') or {}).get('model', 'model')})", m.get("split", "?"),
                 *_own_figures(m, bench), "this report"])  # fmt: skip
    body = [table(bench.caption, ["model", "split", *bench.columns, "source"], rows, 99), para(bench.note, "muted")]
    if bench is NIH:
        status, warn = comparability(m)
        body.append(para(status, "warn" if warn else "notice"))
    return Section("published", "Published results", Html("".join(body)))


def _own_figures(m: dict[str, Any], bench: Benchmark) -> list[str]:
    """This evaluation's figures in the benchmark's columns: the (mean) AUROC with its interval; accuracy,
    sensitivity and specificity at the validation threshold of its one finding."""
    low, high = ci(m)
    out = [with_interval(m.get("mean_auroc"), low, high)]
    if len(bench.columns) > 1:
        row = next(iter(m["per_class"].values()), {})
        counts = [row.get(k) for k in ("tp", "fp", "tn", "fn")]
        accuracy = (counts[0] + counts[2]) / sum(counts) if None not in counts and sum(counts) else None
        out += [pct(accuracy), pct(row.get("sensitivity")), pct(row.get("specificity"))]
    return out


def sections(inputs: ReportInputs) -> list[Section]:
    """Every section that applies to this evaluation, in page order."""
    builders = (per_finding, sources, curves, training, subgroups, calibration, unusual, adjudicated, localisation,
                model_card, published)
    return [section for build in builders if (section := build(inputs)) is not None]


def is_nih(metrics: dict[str, Any]) -> bool:
    """Whether the scored data is NIH ChestX-ray14's (its radiologists' reads and boxes can exist)."""
    return (metrics.get("data") or {}).get("dataset", "nih") == "nih"
