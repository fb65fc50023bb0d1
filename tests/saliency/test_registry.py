"""The method registry: one torch-free line per built-in method, checked against its class; the docks list every
method without importing torch; a method added by one class plus one registry line is usable by name."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from napari_global_xai._method_names import BUILTIN_METHODS, METHOD_CLASSES
from napari_global_xai.saliency import base
from napari_global_xai.saliency.base import METHODS, SaliencyMethod, builtin_method_class, get_method, method_names

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.parametrize("name", list(METHOD_CLASSES))
def test_every_registry_line_names_a_method_class_of_that_name(name):
    cls = builtin_method_class(name)
    assert issubclass(cls, SaliencyMethod) and cls.name == name and METHODS[name] is cls
    assert METHOD_CLASSES[name].endswith(f":{cls.__name__}") and cls.__module__ == METHOD_CLASSES[name].split(":")[0]


def test_registry_lines_are_the_registered_built_ins():
    assert BUILTIN_METHODS == tuple(METHOD_CLASSES) and len(set(BUILTIN_METHODS)) == len(BUILTIN_METHODS)
    assert set(BUILTIN_METHODS) <= set(method_names())
    # every class registered by the built-in modules has its line (nothing registered only by a decorator)
    unlisted = [
        n for n, c in METHODS.items() if c.__module__.startswith("napari_global_xai.") and n not in METHOD_CLASSES
    ]
    assert not unlisted


def test_docks_list_every_registered_method_without_importing_torch():
    code = (
        "import sys\n"
        "import napari_global_xai._qt.explain_widget, napari_global_xai._qt.sanity_widget\n"
        "from napari_global_xai._qt._method_inputs import METHODS\n"
        "print('torch' in sys.modules, ','.join(METHODS))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    torch_loaded, dock_methods = done.stdout.split()
    assert torch_loaded == "False"
    assert dock_methods.split(",") == list(BUILTIN_METHODS)
    assert sorted(BUILTIN_METHODS) == [m for m in method_names() if m in METHOD_CLASSES]


def test_a_new_method_is_one_class_plus_one_registry_line(monkeypatch):
    """A class in a module of its own (never imported, no decorator) and one registry line make it usable."""
    import torch

    monkeypatch.setitem(METHOD_CLASSES, "centre_weight_test", f"{__name__}:CentreWeight")
    monkeypatch.delitem(METHODS, "centre_weight_test", raising=False)
    try:
        model = SimpleNamespace(module=torch.nn.Linear(1, 1), card=SimpleNamespace(activation="sigmoid"))
        method = get_method("centre_weight_test", model)
        assert isinstance(method, CentreWeight)
        maps = method.attribute(torch.ones(2, 3, 5, 7), torch.tensor([0, 1]))
        assert maps.shape == (2, 1, 5, 7) and float(maps[0, 0, 2, 3]) == maps.max()
    finally:
        METHODS.pop("centre_weight_test", None)
    monkeypatch.setitem(METHOD_CLASSES, "broken_test", f"{__name__}:CentreWeight")  # name does not match
    with pytest.raises(TypeError, match="broken_test"):
        base.builtin_method_class("broken_test")


class CentreWeight(SaliencyMethod):
    """Distance-to-centre weight (defined for the test: a method added without touching the package)."""

    name = "centre_weight_test"
    needs_grad = False
    spatial_output = True

    def attribute(self, x, targets):
        import torch

        h, w = x.shape[-2:]
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        d = -((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2).float()
        return d.expand(len(x), 1, h, w).clone()
