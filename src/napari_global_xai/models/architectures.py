"""Model architectures, so state dicts can be loaded with ``weights_only=True``.

A card's ``architecture`` names the code that builds the empty model (:func:`resolve_architecture`):

* a registered name (``"demo_net"``; register yours with :func:`register_architecture`);
* ``"package.module:factory"``: an importable class or function;
* ``"file.py:ClassName"``: a Python file (path relative to the card's folder, or absolute);
* ``"timm:resnet34"``: a timm model (``pretrained=False``), when timm is installed.

``architecture_kwargs`` are passed to the factory (for timm e.g. ``in_chans`` and ``num_classes``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["DemoNet", "register_architecture", "build_architecture", "resolve_architecture", "ARCHITECTURES"]

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str):
    """Decorator: make ``factory(**kwargs) -> nn.Module`` loadable by name from a model card."""

    def deco(factory):
        ARCHITECTURES[name] = factory
        return factory

    return deco


def build_architecture(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered architecture.

    Raises
    ------
    KeyError
        With the list of known names, when ``name`` is not registered.
    """
    factory, _ = resolve_architecture(name)
    return factory(**kwargs)


def resolve_architecture(spec: str, base_dir=None) -> tuple[Callable[..., nn.Module], str]:
    """The factory an architecture string names, and a one-line note of which code it imports.

    Parameters
    ----------
    spec : str
        Registered name, ``"package.module:factory"``, ``"file.py:ClassName"`` or ``"timm:model_name"``.
    base_dir : path, optional
        Folder relative ``file.py`` paths start from (the card's folder).

    Returns
    -------
    (callable, str)
        ``factory(**kwargs) -> nn.Module`` and a note such as ``"importing architecture MyNet from /x/net.py"``
        (empty for registered names: no user code runs).

    Raises
    ------
    KeyError
        Unknown registered name, missing module/file/attribute, or timm not installed; the message says which.
    """
    import importlib
    import importlib.util
    from pathlib import Path

    if ":" not in spec:
        if spec not in ARCHITECTURES:
            raise KeyError(
                f"unknown architecture {spec!r}; registered: {sorted(ARCHITECTURES)}; or give "
                "'package.module:factory', 'file.py:ClassName' or 'timm:model_name'"
            )
        return ARCHITECTURES[spec], ""
    source, _, attr = spec.rpartition(":")
    if source == "timm":
        try:
            timm = importlib.import_module("timm")
        except ImportError as exc:
            raise KeyError(
                f"architecture {spec!r} needs timm, which is not importable here ({exc}); "
                "pip install 'napari-global-xai[timm]' (timm needs a torchvision matching torch)"
            ) from None
        return (
            lambda **kw: timm.create_model(attr, pretrained=False, **kw)
        ), f"importing architecture {attr} from timm {getattr(timm, '__version__', '')}".rstrip()
    if source.endswith(".py"):
        path = Path(source)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        path = path.resolve()
        if not path.is_file():
            raise KeyError(f"architecture file {path} (from {spec!r}) does not exist")
        name = f"_gxai_user_arch_{abs(hash(str(path)))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        import sys

        sys.modules[name] = module  # dataclasses / pickling inside the file look themselves up here
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - any error in the user's file
            sys.modules.pop(name, None)
            raise KeyError(f"architecture file {path} fails to import: {type(exc).__name__}: {exc}") from None
        where = str(path)
    else:
        try:
            module = importlib.import_module(source)
        except ImportError as exc:
            raise KeyError(f"architecture module {source!r} (from {spec!r}) cannot be imported: {exc}") from None
        where = getattr(module, "__file__", None) or source
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise KeyError(f"architecture {spec!r}: {where} has no class or function {attr!r}")
    return factory, f"importing architecture {attr} from {where}"


def _conv_bn(cin, cout, stride=1, kernel=3):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ResidualBlock(nn.Module):
    """Basic ResNet block (two 3×3 convs) with a strided 1×1 projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class DemoNet(nn.Module):
    """Compact ResNet-style multi-label classifier for 2-channel (red, green) UWF images.

    Two overlapping stride-2 3×3 convs (no patchify grid), then three residual stages (stride 2 each) to a
    stride-16 feature map, and a head on the concatenated global average and global max (max pooling lets a few
    small lesions decide a label). Output: one logit per label (sigmoid multi-label).

    Parameters
    ----------
    in_channels : int
    n_labels : int
    widths : tuple of int
        Channels of the stem and of the three stages.
    """

    def __init__(self, in_channels: int = 2, n_labels: int = 5, widths=(16, 32, 48, 96)):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(_conv_bn(in_channels, w0, 2), _conv_bn(w0, w0, 2))
        self.stage1 = ResidualBlock(w0, w1, 2)
        self.stage2 = ResidualBlock(w1, w2, 2)
        self.stage3 = nn.Sequential(ResidualBlock(w2, w3, 1), ResidualBlock(w3, w3, 1))
        self.head = nn.Linear(2 * w3, n_labels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


@register_architecture("demo_net")
def _demo_net(**kwargs) -> nn.Module:
    return DemoNet(**kwargs)
