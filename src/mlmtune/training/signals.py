"""SIGINT and SIGTERM: inside the loop, finish the step and save a checkpoint (StopFlag); before and
after it, stop like Ctrl-C (AbortOnSignal), so a failure's rules decide what stays."""

from __future__ import annotations

import signal

from ..errors import Interrupted

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT stops at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in SIGNAL_EXIT:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a server): no handlers
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class AbortOnSignal:
    """Before the loop (reading, tokenizing, the baseline) and after it, SIGTERM stops the run like
    Ctrl-C does: an exception, so what the run wrote is removed or kept as a failure's rules say.
    Inside the loop StopFlag takes over (finish the step, save a checkpoint)."""

    def __enter__(self):
        self._previous = None
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    @staticmethod
    def _handle(signum, frame):
        raise Interrupted("stopped by SIGTERM outside a training step; files are whole, and a new run without "
                          "a checkpoint leaves nothing behind: run the command again", SIGNAL_EXIT[signal.SIGTERM])

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
