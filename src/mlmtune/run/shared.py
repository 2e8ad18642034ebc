"""One output folder for the whole job: with several processes (several nodes), every process must see
the same --output-dir.

Every process writes its RNG state into the checkpoint folder that the first process renames once
complete, and --resume reads run.json and the newest checkpoint in every process. On a file system each
node keeps for itself (a local disk), the second node would save into a folder nobody renames and
resume from nothing. So before anything else is read or written, the first process leaves a hidden
marker in the folder and every process looks for it; a process that does not see it means the folder
is not shared, and the run is refused in one line. (The marker is a temporary: it is removed at once,
and by the next run if a kill cuts this one short.)
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from pathlib import Path

from ..errors import ConfigError
from ..model.strategy import everywhere
from .files import TEMP_PREFIX


def check_shared_folder(accelerator, out: Path) -> None:
    """Refuse an --output-dir that the processes of the job do not all see as one folder."""
    if accelerator.num_processes < 2:
        return
    from accelerate.utils import broadcast_object_list, gather_object

    marker = [f"{TEMP_PREFIX}shared-{secrets.token_hex(8)}" if accelerator.is_main_process else None]
    broadcast_object_list(marker)
    path = out / marker[0]
    if accelerator.is_main_process:  # the folder the run will write anyway (a failed run removes it again)
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(socket.gethostname(), encoding="utf-8")
    accelerator.wait_for_everyone()
    seen = gather_object([(accelerator.process_index, socket.gethostname(), path.is_file())])
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with contextlib.suppress(OSError):
            path.unlink()
    blind = [(rank, host) for rank, host, found in seen if not found]
    if blind:
        ranks = ", ".join(str(rank) for rank, _ in blind)
        hosts = ", ".join(sorted({host for _, host in blind}))
        raise everywhere(ConfigError(
            f"--output-dir {out} is not one folder for the whole job: rank{'s' if len(blind) > 1 else ''} {ranks} "
            f"(on {hosts}) cannot see what rank 0 wrote into it, as on a disk of each node's own. Every process "
            "saves into the checkpoints and --resume reads them in every process: give an --output-dir on a "
            "file system all nodes share (NFS, Lustre, a cloud file store)"))
