"""cxr14: train and score chest X-ray classifiers on NIH ChestX-ray14 (or on its own phantoms)."""

__version__ = "0.2.0"
