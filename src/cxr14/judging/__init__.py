"""Judging a trained model on a split: how good, how sure, for whom, and where it looked.

    evaluate.py         `cxr14 evaluate` and training's test step: metrics.json, per_class.csv, the report
    metrics.py          AUROC / AUPRC per finding (undefined findings left out of the mean)
    bootstrap.py        95% intervals from a bootstrap over patients
    thresholds.py       Youden thresholds chosen on validation; operating points
    calibration.py      temperature fitting, reliability bins, ECE
    subgroups.py        AUROC by sex, age band and view
    adjudicated.py      Google's radiologist-adjudicated labels
    localisation.py     heatmaps against boxes: pointing game, IoU, chance
    evaluate_boxes.py   `cxr14 evaluate --bbox`
    report/             the self-contained report.html
"""
