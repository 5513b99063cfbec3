"""cxr14: train, evaluate and explain chest X-ray classifiers on NIH ChestX-ray14."""

__version__ = "0.1.0"
