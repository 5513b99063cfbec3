"""SIGTERM and SIGINT become a request to stop at the next step boundary, so a run can save itself and resume.

SLURM sends SIGTERM before it kills a job (then SIGKILL some seconds later), torchrun forwards it to every
process, and Ctrl-C sends SIGINT. The first signal only sets a flag: training finishes the optimizer step it is
in, writes last.pth atomically and exits with a line saying how to resume. A second SIGINT aborts at once
(what a user who presses Ctrl-C twice means); the checkpoints on disk stay whole either way.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """A context manager holding the stop flag while training runs; the old handlers come back on exit."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._old: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for sig in HANDLED:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old.clear()

    @property
    def exit_status(self) -> int:
        """What a process ended by this signal conventionally returns (128 + signal number)."""
        return 128 + int(signal.Signals[self.signal_name]) if self.signal_name else 0
