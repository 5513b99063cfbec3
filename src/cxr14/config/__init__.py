"""Every command's options: one dataclass per command, its argparse options and its checks, built from one field list.

    options.py   the mechanism: opt() fields with help, range and path kind; argparse from them; the checks
    train.py     TrainConfig (`cxr14 train`, `python main.py`), saved as config.json in the run folder
    commands.py  the other commands' configs
    dicom.py     `cxr14 dicom ...`: DICOM films in, DICOM results out

Only the standard library is imported here, so `cxr14 --help` stays fast.
"""

from cxr14.config.commands import (
    EXPORT_FORMATS,
    CompareConfig,
    DemoConfig,
    DownloadConfig,
    EvaluateConfig,
    ExportConfig,
    FitGateConfig,
    PhantomConfig,
    PredictConfig,
    PrepareConfig,
    ReportConfig,
    ServeConfig,
)
from cxr14.config.dicom import DICOM_OUTPUTS, DICOM_VIEWS, DicomListenConfig, DicomPredictConfig
from cxr14.config.options import Options, add_arguments, check_ranges, from_args, opt
from cxr14.config.train import EMA_DECAY, LOSSES, PRESETS, TrainConfig, parse_with_preset

__all__ = [
    "DICOM_OUTPUTS",
    "DICOM_VIEWS",
    "EMA_DECAY",
    "EXPORT_FORMATS",
    "LOSSES",
    "PRESETS",
    "CompareConfig",
    "DemoConfig",
    "DicomListenConfig",
    "DicomPredictConfig",
    "DownloadConfig",
    "EvaluateConfig",
    "ExportConfig",
    "FitGateConfig",
    "Options",
    "PhantomConfig",
    "PredictConfig",
    "PrepareConfig",
    "ReportConfig",
    "ServeConfig",
    "TrainConfig",
    "add_arguments",
    "check_ranges",
    "from_args",
    "opt",
    "parse_with_preset",
]
