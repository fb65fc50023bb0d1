"""Picklable recipes for what a Dask worker needs: the model and the stack, opened once per worker.

A :class:`ModelSpec` is the model's card (with what loading filled in: format, channels), the device to use on the
worker and the trust flag; :func:`worker_model` loads it at most once per worker process. A :class:`StackSpec` is the
stack's lazy pixel source, serialised by reference: a dask array travels as its graph (the reader's tasks, which
open the files on the worker), a zarr array as its store, and a read-only memory map as its file name, offset and
strides (:func:`_reduce_memmap`), never as its pixels; only an in-memory numpy stack travels whole.
:func:`worker_stack` rebuilds the :class:`~napari_global_xai.data.AlignedStack` once per worker, so every chunk task
reads just its own images (in the frame the client used: right eyes mirrored when the model asks for it).

Notes
-----
Workers must see the stack's and the model's files under the same paths as the client (a shared file system, as on
SLURM / PBS clusters); an in-memory stack needs none.
"""

from __future__ import annotations

import copy
import copyreg
import hashlib
import json
import mmap
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from ..config import DEFAULT_DEVICE

__all__ = ["ModelSpec", "StackSpec", "worker_model", "worker_stack", "clear_worker_cache"]

_CACHE: dict[tuple[str, str], object] = {}
_LOCK = threading.RLock()  # re-entrant: a task cache entry builds the model and stack entries


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the model.

    Attributes
    ----------
    card : ModelCard
        A copy of the loaded model's card (format and input channels filled in; ``path`` kept, so relative weights
        and ``file.py:Class`` architectures resolve as on the client).
    device : str
        ``"auto"``, ``"cuda"``, ``"mps"`` or ``"cpu"``, resolved on the worker (one GPU per worker: ``"auto"``).
    trust_pickle : bool
    torch_threads : int, optional
        ``torch.set_num_threads`` on the worker (None: torch's default).
    """

    card: object
    device: str = DEFAULT_DEVICE
    trust_pickle: bool = False
    torch_threads: int | None = None

    @classmethod
    def from_model(
        cls, model, device: str | None = None, trust_pickle: bool | None = None, torch_threads: int | None = None
    ) -> ModelSpec:
        """The spec of a :class:`~napari_global_xai.models.LoadedModel`.

        Parameters
        ----------
        model : LoadedModel
        device : str, optional
            Default: the model's device type (``"cuda"``, ``"cpu"``). An index such as ``cuda:1`` is dropped either
            way: each worker uses its own GPU.
        trust_pickle : bool, optional
            Default: True only when the model already is a trusted full pickle (the user allowed it to load).
        torch_threads : int, optional

        Raises
        ------
        ModelLoadError
            The model was not loaded from a file (a module built in memory): workers could not load it.
        """
        from ..models import ModelLoadError

        weights = model.card.weights_path()
        if not weights.is_file():
            raise ModelLoadError(
                f"a cluster run loads the model from its file on every worker, but {weights} "
                "does not exist; save the model (TorchScript, torch.export or a state dict with "
                "its card) and load it from the card"
            )
        trust = model.card.format == "pickle" if trust_pickle is None else bool(trust_pickle)
        device = str(device or model.device.type).split(":")[0]
        return cls(copy.deepcopy(model.card), device, trust, torch_threads)

    @property
    def token(self) -> str:
        """Identity of the model on a worker (card content, card file, device, trust, threads)."""
        card = asdict(self.card)
        text = json.dumps(
            [card, self.card.path, self.device, self.trust_pickle, self.torch_threads], sort_keys=True, default=str
        )
        return hashlib.sha1(text.encode()).hexdigest()


def worker_model(spec: ModelSpec):
    """The spec's :class:`~napari_global_xai.models.LoadedModel`, loaded once per worker process and cached."""

    def load():
        import torch

        from ..models import load_model

        if spec.torch_threads:
            torch.set_num_threads(int(spec.torch_threads))
        return load_model(copy.deepcopy(spec.card), device=spec.device, trust_pickle=spec.trust_pickle)

    return _cached("model", spec.token, load)


def _cached(kind: str, token: str, make):
    with _LOCK:
        key = (kind, token)
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]


def clear_worker_cache() -> None:
    """Forget the models and stacks opened in this process (tests; a worker drops them when it exits)."""
    with _LOCK:
        _CACHE.clear()


# ------------------------------------------------------------------------------------------------ stacks


@dataclass(frozen=True)
class StackSpec:
    """A stack's pixels by reference, plus what :meth:`AlignedStack.get` needs (ids, files, laterality, frame).

    Attributes
    ----------
    payload : bytes
        The pixel array pickled by reference (see the module docstring).
    image_ids, sources : tuple of str
        For error messages that name the image and its file.
    laterality : tuple of str
    frame : {"stored", "left"} or ""
        ``""`` for a bare pixel array (no ids, no laterality).
    token : str
        Identity of the stack on a worker (hash of all of the above).
    """

    payload: bytes
    image_ids: tuple
    sources: tuple
    laterality: tuple
    frame: str
    token: str

    @classmethod
    def from_stack(cls, stack) -> StackSpec:
        """The spec of an :class:`~napari_global_xai.data.AlignedStack` (its pixels are not read).

        A bare pixel array ``(n, H, W, C)`` (numpy, memory map, dask, zarr; what the curve and SAG functions also
        take) is accepted too: the spec then has no ids and :meth:`open` gives the array back as it was.
        """
        import cloudpickle

        bare = not hasattr(stack, "pixels")
        with _memmaps_by_reference():
            payload = cloudpickle.dumps(stack if bare else stack.pixels)
        if bare:
            fields = ((), (), (), "")
        else:
            fields = (
                tuple(stack.image_ids),
                tuple(stack.sources),
                tuple(str(v) for v in stack.laterality),
                stack.frame,
            )
        digest = hashlib.sha1(payload)
        digest.update(json.dumps(fields).encode())
        return cls(payload, *fields, token=digest.hexdigest())

    def open(self):
        """The stack, rebuilt (lazily) from the spec (a bare array spec gives the array)."""
        import cloudpickle

        from ..data import AlignedStack

        if not self.frame:
            return cloudpickle.loads(self.payload)
        return AlignedStack(
            cloudpickle.loads(self.payload),
            list(self.image_ids),
            laterality=list(self.laterality),
            sources=list(self.sources),
            frame=self.frame,
        )


def worker_stack(spec: StackSpec):
    """The spec's stack, rebuilt once per worker process and cached."""
    return _cached("stack", spec.token, spec.open)


@contextmanager
def _memmaps_by_reference():
    """Within the block, pickling a read-only file-backed memory map records its file, not its bytes."""
    previous = copyreg.dispatch_table.get(np.memmap)
    copyreg.dispatch_table[np.memmap] = _reduce_memmap
    try:
        yield
    finally:
        if previous is None:
            copyreg.dispatch_table.pop(np.memmap, None)
        else:
            copyreg.dispatch_table[np.memmap] = previous


def _reduce_memmap(array: np.memmap):
    """``(reopen, (file, offset, shape, strides, dtype))`` for a read-only view of a mapped file, else a copy.

    The view's first element lies ``root.offset + (view address - root address)`` bytes into the file, where
    ``root`` is the array that owns the mapping (``numpy.memmap`` places its data pointer at file byte ``offset``).
    """
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    filename = getattr(root, "filename", None)
    if not isinstance(root.base, mmap.mmap) or not filename or getattr(root, "mode", None) != "r":
        return np.asarray(array).copy().__reduce__()  # not read-only file-backed: the bytes themselves
    start = int(root.offset) + (array.__array_interface__["data"][0] - root.__array_interface__["data"][0])
    return _reopen_memmap, (str(filename), start, array.shape, array.strides, array.dtype.str)


def _reopen_memmap(filename: str, start: int, shape, strides, dtype: str) -> np.ndarray:
    """The view recorded by :func:`_reduce_memmap`, mapped read-only from the file again."""
    whole = np.memmap(filename, dtype=np.uint8, mode="r")
    return np.ndarray(shape, dtype=np.dtype(dtype), buffer=whole, offset=start, strides=strides)
