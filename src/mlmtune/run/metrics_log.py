"""OUTPUT/metrics.jsonl: one JSON record per line, appended as the run goes, cut back on --resume."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .files import atomic_write_text


def utc_iso(seconds: float | None = None) -> str:
    """A wall-clock time (now by default) in ISO 8601 UTC, to the second: 2026-11-24T15:30:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if seconds is None else seconds))


class MetricsLog:
    """OUTPUT/metrics.jsonl: one JSON object per line, flushed as written."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """On resume: drop records from steps the checkpoint has not seen, a torn last line, and any
        line that is not a record (see parse_record)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [line for line in _lines(self.path) if (record := parse_record(line)) and record["step"] <= step]

        atomic_write_text(self.path, "".join(k + "\n" for k in kept))


def parse_record(line: str) -> dict | None:
    """A metrics.jsonl line -> its record: a JSON object with a whole-number step. Anything else (a torn
    line, a bare number, a hand edit) is None and skipped, as the log is a record, not an input."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step")
    return record if isinstance(step, int) and not isinstance(step, bool) else None


def _lines(path: Path) -> list[str]:
    return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl (lines that are not records are skipped)."""
    if not Path(path).exists():
        return []
    return [record for line in _lines(path) if (record := parse_record(line)) is not None]
