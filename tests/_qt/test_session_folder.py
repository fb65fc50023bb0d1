"""The Explain dock's temporary session folder: one subfolder per run, removed on cleanup; folders left by a process
that no longer runs (a crash) are swept by the next session."""

import subprocess
import sys
import tempfile
from pathlib import Path

from napari_global_xai._qt._session_folder import OWNER_FILE, SessionFolder


def test_runs_get_fresh_subfolders_and_a_dead_session_is_swept():
    dead = Path(tempfile.mkdtemp(prefix="global-xai-test-"))
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (dead / OWNER_FILE).write_text(finished.stdout.strip())
    stranger = Path(tempfile.mkdtemp(prefix="global-xai-test-"))  # no owner file: not a session folder, kept
    folder = SessionFolder(prefix="global-xai-test-")
    first, second = folder.new_run(), folder.new_run()
    assert first != second and first.parent == second.parent == folder.path
    assert folder.holds(first) and not folder.holds(stranger)
    assert not dead.exists() and stranger.exists()
    path = folder.path
    folder.cleanup()
    assert not path.exists() and folder.path is None
    folder.cleanup()  # idempotent
    stranger.rmdir()
