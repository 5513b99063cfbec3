"""The options of `cxr14 dicom ...`: DICOM films in, DICOM results (SR, heatmap SC, GSPS) back into their study."""

from __future__ import annotations

from dataclasses import MISSING, dataclass
from pathlib import Path

from cxr14.config.options import Options, opt
from cxr14.errors import UserError

#: The result objects a film can get: its findings (SR), its heatmaps (SC), its top finding's region (GSPS).
DICOM_OUTPUTS = ("sr", "sc", "gsps")
#: Which films are scored: frontal (PA, AP) only, or every view.
DICOM_VIEWS = ("frontal", "all")
OUTPUTS_HELP = ("the result objects to make, comma-separated: sr (the findings, a TID 1500 structured report), sc "
                "(heatmaps of the top findings over the film, as Secondary Captures), gsps (the top finding's hottest "
                "region outlined on the film, as a presentation state)")  # fmt: skip
VIEWS_HELP = ("frontal: score PA and AP films only (laterals and films without a ViewPosition are skipped); all: "
              "every view (the model was trained on frontal films)")  # fmt: skip


def parse_outputs(text: str) -> frozenset[str]:
    """--outputs as a set, or a UserError naming what is unknown."""
    names = frozenset(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(DICOM_OUTPUTS))
    if unknown or not names:
        raise UserError(f"--outputs {text!r}: {'unknown ' + ', '.join(unknown) if unknown else 'none given'}; "
                        f"choose from {', '.join(DICOM_OUTPUTS)}")  # fmt: skip
    return names


def parse_peer(spec: str) -> tuple[str, str, int]:
    """"AET@HOST:PORT" as (AET, HOST, PORT), or a UserError showing the form (the one parser of --send)."""
    aet, at, address = spec.partition("@")
    host, colon, port = address.rpartition(":")
    if not (at and colon and aet and host and port.isdigit() and 0 < int(port) < 65536 and len(aet) <= 16):
        raise UserError(f"--send {spec!r} is not AET@HOST:PORT (e.g. ORTHANC@127.0.0.1:4242; the AE title at most 16 "
                        "characters, the port 1 to 65535).")  # fmt: skip
    return aet, host, int(port)


@dataclass
class DicomPredictConfig(Options):
    """`cxr14 dicom predict`: DICOM files in, the result objects of each frontal chest film written as .dcm files."""

    paths: list[Path] = opt(MISSING, "DICOM files or folders of them (searched recursively)", positional=True,
                            nargs="+", path="in_films")  # fmt: skip
    checkpoint: Path = opt(MISSING, "the best_model.pth of a training run, or what `cxr14 export` made of it (an "
                           "ONNX graph gets no heatmaps)", path="in_model")  # fmt: skip
    out: Path = opt(MISSING, "folder for the results: OUT/<source SOP Instance UID>/<kind>.dcm", path="out_dir")
    outputs: str = opt("sr,sc", OUTPUTS_HELP, metavar="sr,sc,gsps")
    views: str = opt("frontal", VIEWS_HELP, choices=DICOM_VIEWS)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_outputs(self.outputs)

    @property
    def output_set(self) -> frozenset[str]:
        return parse_outputs(self.outputs)


@dataclass
class DicomListenConfig(Options):
    """`cxr14 dicom listen`: a DICOM node that scores the films a PACS sends it and stores the results back."""

    checkpoint: Path = opt(MISSING, "the best_model.pth of a training run, or what `cxr14 export` made of it (an "
                           "ONNX graph gets no heatmaps)", path="in_model")  # fmt: skip
    aet: str = opt("CXR14", "this node's AE title: the PACS must call it by this name (1 to 16 characters)")
    port: int = opt(11112, "TCP port to listen on for DICOM associations (0: any free port, logged)", min=0,
                    max=65535)  # fmt: skip
    host: str = opt("127.0.0.1", "address to listen on: 127.0.0.1 is this machine only; 0.0.0.0 opens it to every "
                    "network (then restrict the callers with --allow)")  # fmt: skip
    send: str | None = opt(None, "store the results back by C-STORE to this node (e.g. ORTHANC@127.0.0.1:4242); "
                           "or give --stow", metavar="AET@HOST:PORT")  # fmt: skip
    stow: str | None = opt(None, "store the results back by DICOMweb STOW-RS to this base URL (e.g. "
                           "http://127.0.0.1:8042/dicom-web); or give --send", metavar="URL")  # fmt: skip
    spool: Path = opt(Path("cxr14_spool"), "folder where each film waits from its receipt until its results are "
                      "delivered (incoming/, outgoing/, and dead/ with the reasons); a restart takes up what it holds",
                      path="out_dir")  # fmt: skip
    allow: str | None = opt(None, "accept associations only from these calling AE titles (default: from any)",
                            metavar="AET[,AET...]")  # fmt: skip
    outputs: str = opt("sr,sc", OUTPUTS_HELP, metavar="sr,sc,gsps")
    views: str = opt("frontal", VIEWS_HELP, choices=DICOM_VIEWS)
    batch_size: int = opt(8, "films scored per forward pass, and result sets sent per association", min=1, max=256)
    retry_max: float = opt(60.0, "longest pause in seconds between attempts to deliver results (the pause doubles "
                           "from 1 s after each failed attempt)", gt=0, max=3600)  # fmt: skip
    timeout: float = opt(30.0, "seconds to wait for a DICOM or HTTP peer before that attempt counts as failed",
                         gt=0, max=3600)  # fmt: skip
    device: str = opt("auto", "auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_outputs(self.outputs)
        if (self.send is None) == (self.stow is None):
            raise UserError(
                "cxr14 dicom listen stores its results back by C-STORE (--send AET@HOST:PORT) or by "
                f"STOW-RS (--stow URL): give {'one' if self.send is None else 'only one'} of them."
            )
        for name, title in [("--aet", self.aet)] + [("--allow", a) for a in self.allowed]:
            if not 1 <= len(title) <= 16 or "\\" in title or not title.isprintable():
                raise UserError(f"{name} {title!r} is not an AE title: 1 to 16 printable characters, no backslash.")
        if self.send is not None:
            parse_peer(self.send)
        if self.stow is not None and not self.stow.startswith(("http://", "https://")):
            raise UserError(f"--stow {self.stow!r} is not an http:// or https:// URL.")

    @property
    def allowed(self) -> list[str]:
        """The calling AE titles accepted (empty: any)."""
        return [a.strip() for a in (self.allow or "").split(",") if a.strip()]

    @property
    def output_set(self) -> frozenset[str]:
        return parse_outputs(self.outputs)
