"""Reach inside any model format: layer outputs by name, spatial layers, ReLU census.

Grad-CAM needs the output of a named layer and its gradient. On an ``nn.Module`` a forward hook gives it; on a
TorchScript module hooks are not supported, and a ``torch.export`` program (``ExportedProgram.module()``) is one flat
graph whose submodules are never called, so hooks on them never fire. This module hides the difference:

* ``nn.Module``: forward hooks on the named submodule;
* TorchScript: the forward graph is inlined (each node remembers the module it came from), the layer's last
  tensor-valued node becomes a second output of a new function built from that graph, called on the same module;
* ``torch.export`` graph: an identity submodule is inserted after the layer's last graph node (nodes carry their
  ``nn_module_stack``), and a forward hook on it does the rest.

The kind of a loaded module (:func:`module_kind`) is decided from the module itself, not from the card.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "KIND_NAMES",
    "LayerTap",
    "call_order",
    "layer_names",
    "make_nonlinearities_modules",
    "module_kind",
    "relu_census",
    "spatial_layers",
    "submodule",
]

#: Human names of module kinds (used in refusals and warnings).
KIND_NAMES = {"module": "nn.Module", "torchscript": "TorchScript", "export": "torch.export"}

_TAP_PREFIX = "_gxai_tap_"
_RELU_PREFIX = "_gxai_relu_"


def module_kind(module) -> str:
    """``"torchscript"``, ``"export"`` (an fx graph, e.g. ``ExportedProgram.module()``) or ``"module"``."""
    if isinstance(module, torch.jit.ScriptModule):
        return "torchscript"
    if isinstance(module, torch.fx.GraphModule):
        return "export"
    return "module"


def _ts_path(node) -> str:
    """Dotted submodule path of an inlined TorchScript node (``"a(Sequential).0(Conv2d).SELF(Conv2d)"`` → ``a.0``)."""
    parts = re.findall(r"([^.()]+)\(([^()]*)\)", node.getModuleHierarchy())
    return ".".join(p for p, _ in parts if p not in ("SELF", "UNKNOWN_INSTANCE"))


def _under(path: str, name: str) -> bool:
    return path == name or path.startswith(name + ".")


def _fx_paths(node) -> list[str]:
    stack = node.meta.get("nn_module_stack") or {}
    return [value[0] if isinstance(value, tuple) else str(value) for value in stack.values()]


def _ts_inlined_graph(module):
    graph = module.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    return graph


def _is_tensor_node(node) -> bool:
    return (
        node.kind().startswith("aten::")
        and node.outputsSize() == 1
        and isinstance(node.output().type(), torch._C.TensorType)
    )


def layer_names(module) -> list[str]:
    """Names of the submodules a layer can be tapped at, in definition order (``""`` excluded)."""
    if module_kind(module) == "export":
        seen = {}
        for node in module.graph.nodes:
            for path in _fx_paths(node):
                if path:
                    seen.setdefault(path, None)
        return list(seen)
    return [name for name, _ in module.named_modules() if name and not name.startswith((_TAP_PREFIX, _RELU_PREFIX))]


class LayerTap:
    """Call a model and get the outputs of named layers too, whatever the format.

    Parameters
    ----------
    module : nn.Module, TorchScript module or ``torch.export`` graph module
    names : list of str
        Dotted submodule names (as in ``named_modules()`` of the original model).

    Raises
    ------
    ValueError
        A name that is not a layer of the model (the message lists a few that are).

    Notes
    -----
    A layer called several times gives its last call's output (as forward hooks would). The returned activations
    are part of the autograd graph, so ``torch.autograd.grad(score, activation)`` is the layer gradient.
    """

    def __init__(self, module, names: list[str]):
        self.module = module
        self.names = list(names)
        self.kind = module_kind(module)
        known = layer_names(module)
        missing = [n for n in self.names if n not in known]
        if missing:
            raise ValueError(f"layer {missing[0]!r} is not in the model; its layers end with {known[-6:]}")
        if self.kind == "torchscript":
            self._fn = self._script_function()
        elif self.kind == "export":
            self._hooked = [self._fx_identity(n) for n in self.names]

    def _script_function(self):
        graph = _ts_inlined_graph(self.module)
        taps = []
        for name in self.names:
            last = None
            for node in graph.nodes():  # top-level block: the layer's output is its last node there
                if _is_tensor_node(node) and _under(_ts_path(node), name):
                    last = node
            if last is None:
                raise ValueError(f"layer {name!r} produces no tensor in the TorchScript graph")
            taps.append(last.output())
        ret = graph.return_node()
        old = ret.input()
        graph.eraseOutput(0)
        tup = graph.create("prim::TupleConstruct", [old, *taps])
        graph.appendNode(tup)
        tup.output().setType(torch._C.TupleType([old.type(), *[t.type() for t in taps]]))
        graph.registerOutput(tup.output())
        torch._C._jit_pass_lint(graph)
        return torch._C._create_function_from_graph("gxai_tapped_forward", graph)

    def _fx_identity(self, name: str) -> nn.Module:
        gm = self.module
        tap_name = _TAP_PREFIX + name.replace(".", "_")
        if hasattr(gm, tap_name):
            return getattr(gm, tap_name)
        last = None
        for node in gm.graph.nodes:
            if (
                node.op == "call_function"
                or (node.op == "call_module" and not str(node.target).startswith(_TAP_PREFIX))
            ) and any(_under(p, name) for p in _fx_paths(node)):
                last = node
        if last is None:
            raise ValueError(f"layer {name!r} has no operations in the torch.export graph")
        gm.add_submodule(tap_name, nn.Identity())
        with gm.graph.inserting_after(last):
            new = gm.graph.call_module(tap_name, (last,))
        last.replace_all_uses_with(new, delete_user_cb=lambda user: user is not new)
        new.meta = dict(last.meta)
        gm.recompile()
        return getattr(gm, tap_name)

    def __call__(self, x: torch.Tensor, forward: Callable | None = None):
        """``(model output, [activation per name])`` for input ``x``.

        ``forward`` (default: the module) is what is called for nn.Module and export kinds (e.g. a wrapper that
        applies an activation); TorchScript always calls its own graph, so wrap its output yourself.
        """
        if self.kind == "torchscript":
            # Unoptimised execution: once the profiling executor has warmed up it runs the forward as one
            # differentiable subgraph whose extra outputs (the tapped activations) are not on the autograd path of
            # the model output, so d(output)/d(activation) would be undefined from the third call on.
            with torch.jit.optimized_execution(False):
                out, *acts = self._fn(self.module._c, x)
            return out, acts
        targets = [self.module.get_submodule(n) for n in self.names] if self.kind == "module" else self._hooked
        acts: list = [None] * len(targets)
        hooks = []
        for i, sub in enumerate(targets):

            def hook(_m, _inp, output, i=i):
                acts[i] = output

            hooks.append(sub.register_forward_hook(hook))
        try:
            out = (forward or self.module)(x)
        finally:
            for h in hooks:
                h.remove()
        missing = [n for n, a in zip(self.names, acts) if a is None]
        if missing:
            raise ValueError(f"layer {missing[0]!r} was not called in the forward pass")
        return out, acts


def spatial_layers(module, example: torch.Tensor) -> list[tuple[str, tuple]]:
    """Layers whose output is a spatial ``(n, C, h, w)`` map with ``h·w > 1``, in execution order, with shapes.

    One forward pass of ``example`` (no gradients). A container ending in a spatial layer comes after it.
    """
    names = layer_names(module)
    kind = module_kind(module)
    if kind == "module":
        order: list[tuple[str, tuple]] = []
        hooks = []
        for name in names:

            def hook(_m, _i, out, name=name):
                if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1:
                    order.append((name, tuple(out.shape)))

            hooks.append(module.get_submodule(name).register_forward_hook(hook))
        try:
            with torch.no_grad():
                module(example)
        finally:
            for h in hooks:
                h.remove()
        last = {}
        for i, (name, shape) in enumerate(order):  # a module called twice counts at its last call
            last[name] = (i, shape)
        return [(n, s) for n, (i, s) in sorted(last.items(), key=lambda kv: kv[1][0])]
    usable = []
    for name in names:  # layers whose output the graph exposes (a layer inside control flow may not be)
        try:
            LayerTap(module, [name])
        except ValueError:
            continue
        usable.append(name)
    with torch.no_grad():  # one pass with every layer tapped
        _, acts = LayerTap(module, usable)(example)
    pairs = list(zip(usable, acts))
    order_key = _fx_call_order(module) if kind == "export" else _ts_call_order(module)
    spatial = [
        (n, tuple(a.shape))
        for n, a in pairs
        if isinstance(a, torch.Tensor) and a.ndim == 4 and a.shape[-1] * a.shape[-2] > 1
    ]
    # containers end with (or after) their last child: order by the position of each layer's last node
    return sorted(spatial, key=lambda ns: (order_key.get(ns[0], -1), -ns[0].count(".")))


def submodule(module, name: str):
    """The submodule called ``name`` (dotted, as in ``named_modules()``; ``""``: the module itself), whatever the
    format (TorchScript modules have no ``get_submodule``; a ``torch.export`` graph keeps its parameters in plain
    submodules of the original names)."""
    sub = module
    for part in name.split(".") if name else []:
        sub = getattr(sub, part)
    return sub


def call_order(module, example: torch.Tensor) -> dict[str, int]:
    """Rank of each named layer in the computation, any format: later = closer to the output.

    ``nn.Module``: the order in which the submodules finish in one forward pass of ``example`` (no gradients; a
    container after its children). TorchScript and ``torch.export`` graphs (whose submodules are never called, so
    hooks cannot see them): the position of the layer's last operation in the (inlined) graph; ``example`` is not
    run. A layer that does not run is absent, and so is ``""`` (the module itself).
    """
    kind = module_kind(module)
    if kind == "torchscript":
        return _ts_call_order(module)
    if kind == "export":
        return _fx_call_order(module)
    order: dict[str, int] = {}
    hooks = []
    for name, sub in module.named_modules():
        if name:

            def hook(_m, _i, _o, name=name) -> None:  # returns None: the output is left as it is
                order.setdefault(name, len(order))

            hooks.append(sub.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def _ts_call_order(module) -> dict[str, int]:
    """Position of each layer's last inlined node (later = deeper in the computation)."""
    last = {}
    for i, node in enumerate(_ts_inlined_graph(module).nodes()):
        path = _ts_path(node)
        parts = path.split(".") if path else []
        for k in range(1, len(parts) + 1):
            last[".".join(parts[:k])] = i
    return last


def _fx_call_order(gm) -> dict[str, int]:
    last = {}
    for i, node in enumerate(gm.graph.nodes):
        if node.op == "call_module" and str(node.target).startswith(_TAP_PREFIX):
            continue
        for path in _fx_paths(node):
            if path:
                last[path] = i
    return last


def relu_census(module, example: torch.Tensor) -> tuple[int, int]:
    """``(relu operations run, of which inside nn.ReLU modules)`` in one forward pass of ``example``.

    Hook-based methods (Captum's DeepLIFT) change only ReLUs that are ``nn.ReLU`` modules; the difference is the
    number of ReLUs they treat as linear (functional ``torch.relu``, or every ReLU of a TorchScript model).
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    relu_ops = {torch.ops.aten.relu.default, torch.ops.aten.relu_.default}
    counter = {"ops": 0, "in_module": 0, "depth": 0}

    class _Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in relu_ops:
                counter["ops"] += 1
                counter["in_module"] += counter["depth"] > 0
            return func(*args, **(kwargs or {}))

    hooks = []
    if module_kind(module) != "torchscript":
        for sub in module.modules():
            if isinstance(sub, nn.ReLU):
                hooks.append(
                    sub.register_forward_pre_hook(lambda *_: counter.__setitem__("depth", counter["depth"] + 1))
                )
                hooks.append(sub.register_forward_hook(lambda *_: counter.__setitem__("depth", counter["depth"] - 1)))
    try:
        with torch.no_grad(), _Count():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return counter["ops"], counter["in_module"]


def make_nonlinearities_modules(gm) -> int:
    """In a ``torch.export`` graph, route every ReLU, sigmoid, tanh and 2-D max-pool through its own module.

    In place and idempotent. Then module-hook methods (Captum's DeepLIFT) see every non-linearity, as they would
    in an ``nn.Module`` whose non-linearities are all modules. Returns the number of non-linearities behind modules.
    """
    aten = torch.ops.aten
    makers = {
        aten.relu.default: lambda a: nn.ReLU(),
        aten.relu_.default: lambda a: nn.ReLU(),
        aten.sigmoid.default: lambda a: nn.Sigmoid(),
        aten.tanh.default: lambda a: nn.Tanh(),
        aten.max_pool2d.default: lambda a: nn.MaxPool2d(*a[1:]),
    }
    n = sum(1 for node in gm.graph.nodes if node.op == "call_module" and str(node.target).startswith(_RELU_PREFIX))
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target in makers and not node.kwargs:
            name = f"{_RELU_PREFIX}{n}"
            gm.add_submodule(name, makers[node.target](node.args))
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(name, (node.args[0],))
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            n += 1
    gm.recompile()
    return n
