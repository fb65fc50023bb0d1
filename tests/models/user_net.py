"""A user's own architecture, as a researcher would write it: source text written to a file by the tests.

Unusual on purpose: 3 input channels, 7 outputs, non-square 40×56 input, a functional ``torch.relu`` between
module ReLUs. ``OddNetModules`` is the same network with that ReLU as a module (same weights), the reference for
hook-based methods.
"""

SOURCE = """
import torch
from torch import nn


class OddNet(nn.Module):
    def __init__(self, n_out=7, width=6):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(2 * width, n_out)

    def forward(self, x):
        f = torch.relu(self.down(self.stem(x)))
        return self.head(self.block(f).mean(dim=(2, 3)))


class OddNetModules(OddNet):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.head(self.block(self.act(self.down(self.stem(x)))).mean(dim=(2, 3)))
"""

H, W = 40, 56
N_OUT = 7


def load_source(path):
    """Write :data:`SOURCE` to ``path`` and import it (the test's own module object)."""
    import importlib.util
    import sys

    path.write_text(SOURCE)
    spec = importlib.util.spec_from_file_location("user_net_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so torch.save can pickle a whole OddNet
    spec.loader.exec_module(module)
    return module


def save_all_formats(tmp_path, seed=0):
    """The user's net (random weights, seed) saved as state dict, safetensors, TorchScript and torch.export.

    Returns
    -------
    (module, net, files)
        The imported source module, the eval-mode ``OddNet`` and ``{format: path}`` (plus ``"source"``).
    """
    import torch
    from safetensors.torch import save_file

    src = load_source(tmp_path / "oddnet.py")
    torch.manual_seed(seed)
    net = src.OddNet().eval()
    x = torch.randn(2, 3, H, W)
    files = {
        "source": tmp_path / "oddnet.py",
        "state_dict": tmp_path / "oddnet.pt",
        "safetensors": tmp_path / "oddnet.safetensors",
        "torchscript": tmp_path / "oddnet_scripted.pt",
        "export": tmp_path / "oddnet.pt2",
    }
    torch.save(net.state_dict(), files["state_dict"])
    save_file(net.state_dict(), str(files["safetensors"]))
    torch.jit.script(net).save(str(files["torchscript"]))
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: batch},)), str(files["export"]))
    return src, net, files
