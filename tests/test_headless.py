"""The library and the CLI work without napari or any Qt package (the ``[napari]`` extra is only the plugin), and
``global-xai --help`` (and each sub-command's) imports no torch.

Each check runs a fresh interpreter of this venv in which napari, the Qt bindings, magicgui and napari-matplotlib
cannot be imported (a ``sys.meta_path`` finder refuses them), as on a ``pip install napari-global-xai`` machine.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import tifffile

#: top-level packages of the [napari] extra and the Qt bindings: none may be needed by the core or the CLI
BLOCKED = ("napari", "qtpy", "PyQt6", "PyQt5", "PySide2", "PySide6", "magicgui", "napari_matplotlib")

_PRELUDE = f"""
import importlib.abc, sys

BLOCKED = {BLOCKED!r}


class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked (headless test)")
        return None


sys.meta_path.insert(0, _Refuse())
try:
    import napari  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker let napari in")
"""


def _run(code: str, *args: str, cwd) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # matplotlib picks its backend itself
    done = subprocess.run(
        [sys.executable, "-c", _PRELUDE + code, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


_JOB = """
import importlib, json, pkgutil
import napari_global_xai
from napari_global_xai.cli import main

core = sorted(
    m.name
    for m in pkgutil.walk_packages(napari_global_xai.__path__, "napari_global_xai.")
    if not m.name.startswith("napari_global_xai._qt") and not m.name.endswith("__main__")
)
for name in core:
    importlib.import_module(name)
sample, out = sys.argv[1], sys.argv[2]
codes = [
    main(["make-sample-data", "--out", sample, "--n", "8"]),
    main(["explain", f"{sample}/uwf_sample.tif", "--method", "gradcam", "--targets", "haemorrhage",
          "--format", "tiff", "--out", out, "--quiet"]),
]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"core": core, "codes": codes, "loaded": loaded, "torch": "torch" in sys.modules}))
"""


def test_core_imports_and_a_cli_job_run_without_napari_or_qt(tmp_path):
    sample, out = tmp_path / "sample", tmp_path / "explain"
    result = json.loads(_run(_JOB, str(sample), str(out), cwd=tmp_path))
    core = set(result["core"])
    # every module but the docks imported: the engine, the CLI and the napari reader/writer/sample contributions
    assert {
        "napari_global_xai.saliency.engine",
        "napari_global_xai.cli.explain",
        "napari_global_xai.explain.pipeline",
        "napari_global_xai.demo",
    } <= core
    assert {"napari_global_xai._reader", "napari_global_xai._writer", "napari_global_xai._sample_data"} <= core
    assert result["codes"] == [0, 0] and result["loaded"] == [] and result["torch"]

    # the job's outputs: one mass-normalised global map per label plus the overall map, over the positives only
    with open(sample / "uwf_sample.csv", newline="") as f:
        positives = sum(row["haemorrhage"] == "1" for row in csv.DictReader(f))
    n_images, height, width = tifffile.imread(sample / "uwf_sample.tif").shape[:3]
    summary = json.loads((out / "explain_summary.json").read_text())
    assert summary["status"] == "complete" and summary["maps_per_label"] == {"haemorrhage": positives} and positives
    global_maps = tifffile.imread(out / "global_maps.tif")
    assert global_maps.shape == (2, height, width) and global_maps.dtype == np.float32
    assert np.isfinite(global_maps).all() and (global_maps >= 0).all()
    np.testing.assert_allclose(global_maps.reshape(2, -1).sum(axis=1), 1.0, rtol=1e-4)
    assert global_maps[0].std() > 0  # a map, not a constant
    image_maps = tifffile.imread(out / "image_maps.tif")
    assert image_maps.shape == (n_images, 1, height, width)
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_images and sum(r["computed_haemorrhage"] == "1" for r in rows) == positives


_HELP = """
import argparse, contextlib, io, json
from napari_global_xai.cli import build_parser, main

sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
runs = []
for command in [[]] + [[name] for name in sub.choices]:
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        code = main([*command, "--help"])
    runs.append({"command": command, "code": code, "text": text.getvalue(), "torch": "torch" in sys.modules})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"runs": runs, "loaded": loaded}))
"""


def test_help_of_every_command_imports_no_torch(tmp_path):
    result = json.loads(_run(_HELP, cwd=tmp_path))
    runs = result["runs"]
    commands = [r["command"][0] for r in runs[1:]]
    assert {"explain", "peppr", "sag", "demo", "report", "make-sample-data"} <= set(commands)
    for run in runs:
        name = " ".join(["global-xai", *run["command"]])
        assert run["code"] == 0 and f"usage: {name} " in run["text"], (name, run["text"][:200])
        assert not run["torch"], f"'{name} --help' imported torch"
    assert all(f"    {c} " in runs[0]["text"] or f"    {c}\n" in runs[0]["text"] for c in commands)
    assert result["loaded"] == []
