"""Where the Explain dock writes a run when no output folder is chosen: a temporary folder of the dock's session.

Every dock run writes a results folder (the Zarr store and its files) and shows lazy layers over it, so the viewer
never holds the image-wise maps. Without an output folder the run goes to ``run-NNN`` inside one temporary folder
that the dock owns; it is removed, with the layers that read it, when the dock is closed (taken out of the viewer),
when the dock is destroyed or the application quits, and at the latest by the next session's first run (a folder
records its process id; folders of processes that no longer run are swept, e.g. after a crash). Choose an output
folder to keep the results.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["SessionFolder", "RESULTS_FOLDER_KEY", "sweep_stale"]

#: The file inside a session folder naming the process that owns it.
OWNER_FILE = "owner.pid"

#: Layer-metadata key of the results folder a dock's layer reads (layers of the session folder are removed with it).
RESULTS_FOLDER_KEY = "napari_global_xai_results_folder"


class SessionFolder:
    """A temporary folder made on first use, one subfolder per run; :meth:`cleanup` removes it (idempotent)."""

    def __init__(self, prefix: str = "global-xai-explain-"):
        self.prefix = prefix
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._runs = 0

    @property
    def path(self) -> Path | None:
        """The folder, or None before the first run (and after :meth:`cleanup`)."""
        return None if self._tmp is None else Path(self._tmp.name)

    def new_run(self) -> Path:
        """A fresh, not yet existing subfolder for the next run."""
        if self._tmp is None:
            sweep_stale(self.prefix)
            self._tmp = tempfile.TemporaryDirectory(prefix=self.prefix, ignore_cleanup_errors=True)
            (Path(self._tmp.name) / OWNER_FILE).write_text(str(os.getpid()))
            atexit.register(self.cleanup)
        self._runs += 1
        return Path(self._tmp.name) / f"run-{self._runs:03d}"

    def holds(self, folder) -> bool:
        """Whether ``folder`` lies in this session folder."""
        return self.path is not None and Path(folder).resolve().is_relative_to(self.path.resolve())

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def sweep_stale(prefix: str) -> int:
    """Remove the session folders (``prefix*`` in the temporary directory) whose owning process no longer runs;
    returns how many."""
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            pid = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or being made: left alone
        if pid != os.getpid() and not _running(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True
