"""Fixtures of the run/ tests: a small disk, and a second process holding an output folder's lock."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import hold_lock


@pytest.fixture
def small_disk(tmp_path):
    """A mounted tmpfs of the given size (root only; skipped where mounting is not allowed)."""
    mounted = []

    def make(size: str) -> Path:
        where = tmp_path / f"disk-{size}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield make
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def holder():
    """hold(folder): a real second process that takes the folder's lock and keeps it until the test ends."""
    procs = []

    def hold(folder: Path) -> subprocess.Popen:
        procs.append(hold_lock(folder))
        return procs[-1]

    yield hold
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
