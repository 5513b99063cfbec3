"""Datasets other than NIH's, each read into the same `Metadata` (and then the same patient-wise `Split`).

    common.py    label cells, uncertain labels, paths kept inside their folder, demographics, checks
    table.py     --dataset csv: any labelled set described by one CSV
    folder.py    --dataset folder: one folder per class, optionally inside train/val/test folders
    chexpert.py  CheXpert v1.0 and v1.0-small (Stanford)
    mimic.py     MIMIC-CXR-JPG 2.x (PhysioNet)
    padchest.py  PadChest (BIMCV)
    vindr.py     VinDr-CXR (PhysioNet)
    detect.py    which layout a folder has, so a wrong --dataset is named
"""
