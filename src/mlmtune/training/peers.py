"""A job that never hangs: with several processes, each one beats in the job's store (the launcher's
TCPStore) every few seconds and watches the others' beats.

torch's own timeout on a collective is 30 minutes by default, and says nothing about who is missing.
Here a process whose beat has not moved for --dist-timeout (stopped by SIGSTOP, a hung host, a node
frozen whole) is named in one error line by the first process still answering, and the job ends: a
stopped process on the same host is killed (the launcher would wait 30 s more for it to answer
SIGTERM), the others exit at once. The process group's own timeout is --dist-timeout and a grace
(model/device.group_timeout), so this watch speaks first. A process that finished says so in the
store, so a peer that is still writing the report is never mistaken for one that stopped.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import socket
import sys
import threading
import time
from datetime import timedelta

import torch

from ..errors import MlmtuneError, TrainingError

STOPPED_EXIT = 1  # the job ended because a process stopped answering
DONE = "done"


def job_store():
    """The store the process group was made with (the launcher's TCPStore), or None (a single process)."""
    from torch.distributed.distributed_c10d import _get_default_store

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    try:
        return _get_default_store()
    except (RuntimeError, ValueError):
        return None


def store_client(timeout: float):
    """A connection of our own to the job's TCPStore, with its own timeout (for the watch's thread), or
    None where there is none."""
    store = job_store()
    while hasattr(store, "underlying_store"):  # PrefixStores around it
        store = store.underlying_store
    if not isinstance(store, torch.distributed.TCPStore):
        return None
    return torch.distributed.TCPStore(store.host, store.port, is_master=False, wait_for_workers=False,
                                      timeout=timedelta(seconds=timeout))


class FollowerError(MlmtuneError):
    """The first process failed at what the others wait for; it says why, they stay quiet."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code, self.quiet = exit_code, True


_calls = itertools.count()  # every process calls first_process in the same order: the n-th call's key is shared


def first_process(accelerator, name: str, *, per_node: bool = True):
    """`run(work)`: `work()` on the first process of each node (`per_node=False`: of the job), which
    hands its answer (pickled) to the others through the job's store. They poll for it rather than wait
    in a collective, whose timeout a long corpus would outlast; if that process stops answering, the
    peer watch ends the job, and if it fails, they end with its exit code, quietly (it says why)."""
    store = job_store() if accelerator.num_processes > 1 else None
    if store is None:
        return lambda work: work()
    first = accelerator.process_index - accelerator.local_process_index if per_node else 0
    key = f"mlmtune/first/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/{next(_calls)}/{name}/{first}"

    def run(work):
        if accelerator.process_index == first:
            try:
                answer = work()
            except MlmtuneError as exc:
                store.set(key, pickle.dumps({"error": str(exc), "exit": exc.exit_code}))
                raise
            except BaseException as exc:
                store.set(key, pickle.dumps({"error": f"the process of rank {first} failed ({first_line(exc)})",
                                             "exit": 1}))
                raise
            store.set(key, pickle.dumps({"answer": answer}))
            return answer
        while not store.check([key]):
            time.sleep(0.1)
        reply = pickle.loads(store.get(key))
        if "answer" in reply:
            return reply["answer"]
        raise FollowerError(reply["error"], int(reply["exit"]))

    return run


def is_stopped(pid: int) -> bool:
    """Whether process `pid` (on this host) is stopped (SIGSTOP, a debugger): its state in /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


class PeerWatch:
    """`with PeerWatch(accelerator, timeout):` around the part of a run where the processes work together."""

    def __init__(self, accelerator, timeout: float, *, flag: str = "--dist-timeout", interval: float | None = None,
                 on_end=None):
        """`on_end()`: called before this process ends for a stopped peer; leaves the output folder as a
        failure would, and returns what the user may do next (said in the message)."""
        self.on_end = on_end
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.timeout, self.flag = float(timeout), flag
        self.interval = interval if interval is not None else max(0.5, min(5.0, self.timeout / 5))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")  # a restarted job's old beats are not news
        self.prefix = f"mlmtune/peers/{attempt}/"
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.store = None

    def __enter__(self) -> "PeerWatch":
        if self.world > 1:
            self.store = store_client(self.interval)
        if self.store is not None:
            self._beat(0)
            self._thread = threading.Thread(target=self._run, name="mlmtune-peer-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind, exc, tb):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            try:
                self.store.set(self.key(self.rank), DONE)  # finished (or failing on its own): never "stopped"
            except RuntimeError:
                pass
        if isinstance(exc, torch.distributed.DistError):
            raise TrainingError(f"the processes lost each other ({first_line(exc)}): a process of the job ended or "
                                f"stopped answering (the launcher's report names it); --resume continues from the "
                                f"last checkpoint") from None
        return False

    def key(self, rank: int) -> str:
        return f"{self.prefix}{rank}"

    def _beat(self, count: int) -> None:
        self.store.set(self.key(self.rank), f"{count} {self.host} {self.pid}")

    def _run(self) -> None:
        count, seen = 0, {}  # rank -> (its last beat, when it last changed; None once it is done)
        started = store_ok = time.monotonic()
        while not self._stop.wait(self.interval):
            count += 1
            now = time.monotonic()
            try:
                self._beat(count)
                beats = self._read()
                store_ok = now
            except RuntimeError:  # the store is out of reach: the first node's launcher stopped answering
                if now - store_ok > self.timeout:
                    self._end(f"the job's store on {os.environ.get('MASTER_ADDR', 'the first node')} (kept by the "
                              f"first node's launcher) stopped answering for {now - store_ok:.0f} s ({self.flag} "
                              f"{self.timeout:g}s)", [])
                continue
            for rank, value in beats.items():
                if value == DONE:
                    seen[rank] = (value, None)
                elif rank not in seen or seen[rank][0] != value:
                    seen[rank] = (value, now)
            silent = {r: now - since for r, (_, since) in seen.items() if since is not None and r != self.rank}
            silent.update({r: now - started for r in range(self.world) if r not in seen})  # never beat at all
            stale = sorted(r for r, seconds in silent.items() if seconds >= self.timeout)
            if stale:
                self._report(stale, beats, max(silent[r] for r in stale))

    def _read(self) -> dict[int, str]:
        keys = [self.key(r) for r in range(self.world)]
        present = [k for k in keys if self.store.check([k])]
        values = self.store.multi_get(present) if present else []
        return {int(k.rsplit("/", 1)[1]): v.decode("utf-8", "replace") for k, v in zip(present, values)}

    def _report(self, ranks: list[int], beats: dict[int, str], silent: float) -> None:
        who = []
        for rank in ranks:
            parts = beats.get(rank, "").split()
            where = f" (pid {parts[2]} on {parts[1]})" if len(parts) == 3 else " (it never answered)"
            who.append(f"rank {rank}{where}")
            if len(parts) == 3 and parts[1] == self.host and is_stopped(int(parts[2])):
                os.kill(int(parts[2]), signal.SIGKILL)  # a frozen process cannot answer the launcher's SIGTERM
        self._end(f"{', '.join(who)} stopped answering for {silent:.0f} s ({self.flag} {self.timeout:g}s)", ranks)

    def _end(self, problem: str, ranks: list[int]) -> None:
        """Say it once (the first process still answering), then end this process: the main thread is
        blocked in a collective that would wait for the group's timeout."""
        first_alive = min(r for r in range(self.world) if r not in ranks)
        # no store to name anyone: each node's first process speaks (the first node may be the frozen one)
        speaks = self.rank == first_alive if ranks else os.environ.get("LOCAL_RANK", "0") == "0"
        try:
            next_step = self.on_end() if self.on_end is not None else None
        except Exception:  # leaving the folder tidy must not keep the job alive
            next_step = None
        if speaks:  # on a line of its own, after a progress bar
            print(f"\nerror: {problem}: the job stops here" + (f"; {next_step}" if next_step else ""),
                  file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(STOPPED_EXIT)


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
