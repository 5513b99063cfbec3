"""The original entry point: `python main.py [--pretrained] [--batch_size 64] ...` = `cxr14 train`.

Works from a source checkout too (after `pip install -r requirements.txt`, without installing
the package): the `src/` folder beside this file is put on the import path.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from cxr14.cli import command, name_datasets, run
from cxr14.config import TrainConfig, add_arguments, parse_with_preset


def main() -> int:
    parser = argparse.ArgumentParser(description="Train ConvNeXt on NIH ChestX-ray14 (same as `cxr14 train`).")
    add_arguments(parser, TrainConfig)
    name_datasets(parser)
    return run(command("train"), parse_with_preset(parser, None))


if __name__ == "__main__":
    sys.exit(main())
