"""Shipped files and light imports: the top-level sample_data/ is found from a checkout and from an installed
layout, the packaging config ships every file, and ModelCard / the method list import without torch."""

import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from napari_global_xai import samples

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _python(code: str, path: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=path)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_checkout_lookup_finds_every_shipped_file():
    assert samples.SAMPLE_DIR == ROOT / "sample_data"
    missing = [f for f in samples.SAMPLE_FILES if not (samples.SAMPLE_DIR / f).is_file()]
    assert not missing, f"missing from {samples.SAMPLE_DIR}: {missing}"
    assert samples.SAMPLE_STACK.is_file() and samples.SAMPLE_LABELS.is_file()
    from napari_global_xai.models.card import DEMO_CARD_PATH, ModelCard

    card = ModelCard.from_json(DEMO_CARD_PATH)
    assert card.weights_path().is_file() and card.weights_path().parent == samples.SAMPLE_DIR


def test_packaging_config_ships_every_file_of_sample_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["napari_global_xai.sample_data"] == "sample_data"
    patterns = config["package-data"]["napari_global_xai.sample_data"]
    files = sorted(p.name for p in (ROOT / "sample_data").iterdir() if p.is_file())
    assert set(samples.SAMPLE_FILES) <= set(files)
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert not unshipped, f"sample_data files the wheel would leave out: {unshipped}"
    assert '"napari_global_xai.sample_data"' in (ROOT / "setup.py").read_text()  # the mapped package is listed


def test_installed_layout_lookup_prefers_the_package_folder(tmp_path):
    """A wheel puts the files in napari_global_xai/sample_data/: the lookup finds them there, not elsewhere."""
    site = tmp_path / "site-packages"
    shutil.copytree(SRC / "napari_global_xai", site / "napari_global_xai", ignore=shutil.ignore_patterns("__pycache__"))
    data = site / "napari_global_xai" / "sample_data"
    data.mkdir()
    for name in samples.SAMPLE_FILES:
        os.symlink(samples.SAMPLE_DIR / name, data / name)
    out = _python(
        "import napari_global_xai.samples as s, napari_global_xai.models.card as c; "
        "print(s.SAMPLE_DIR); print(c.DEMO_CARD_PATH); "
        "print(all((s.SAMPLE_DIR / f).is_file() for f in s.SAMPLE_FILES))",
        site,
    )
    sample_dir, card, every = out.splitlines()
    assert Path(sample_dir) == data and Path(card) == data / "demo_net.card.json" and every == "True"


def test_model_card_and_method_names_import_without_torch():
    out = _python(
        "import sys, napari_global_xai.models.card as c, napari_global_xai._method_names as m; "
        "from napari_global_xai.models import ModelCard; "
        "card = ModelCard.from_json(c.DEMO_CARD_PATH); "
        "print('torch' in sys.modules, card.harmonise_laterality, len(m.BUILTIN_METHODS))",
        SRC,
    )
    torch_loaded, harmonise, n_methods = out.split()
    assert torch_loaded == "False" and harmonise == "True" and int(n_methods) > 10


def test_nothing_is_left_in_the_old_places():
    assert not (SRC / "napari_global_xai" / "sample_data").exists()
    assert not (SRC / "napari_global_xai" / "models" / "weights").exists()
