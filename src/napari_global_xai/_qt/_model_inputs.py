"""The model inputs every dock shares: the user's model card, the device and the trust-pickle switch, and what a
dock reads from them (the card's labels, a file field's path).

One source for their labels and defaults, so each dock (Explain, PEPPR, SAG, Concepts, Sanity check) takes the
user's model the same way as the CLI (``--model``, ``--device``, ``--trust-pickle``). The device list is filled in a
worker thread (it imports torch; :func:`napari_global_xai.models.device.available_devices`), so opening a dock never
waits for torch; until then it offers the default and the CPU (:mod:`napari_global_xai.config`).
"""

from __future__ import annotations

import json
from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, FileEdit

from ..config import DEFAULT_DEVICE
from ..samples import DEMO_CARD_PATH

__all__ = ["ModelInputs", "available_devices_job", "labels_of_card", "leave_a_core", "load_model_job", "optional_path"]


def optional_path(value) -> str | None:
    """A FileEdit value as a path string, or None when empty."""
    text = str(value) if value is not None else ""
    return text if text not in ("", ".") else None


def labels_of_card(path: str | None) -> list[str]:
    """The labels of a model card (the demo model's when ``path`` is None); empty when the card cannot be read."""
    card = Path(path) if path else DEMO_CARD_PATH
    try:
        return list(json.loads(card.read_text())["labels"])
    except (OSError, ValueError, KeyError):
        return []


def available_devices_job():
    from ..models.device import available_devices

    return available_devices()


class ModelInputs:
    """Model card file, device and trust-pickle widgets, and what a job needs of them.

    Attributes
    ----------
    model_card, device, trust_pickle : magicgui widgets
    widgets : list
        The three, in the order a dock's form shows them.
    devices_worker : napari worker
        Fills :attr:`device` with the devices this machine has (the default, ``auto``, first).
    """

    def __init__(self):
        from napari.qt.threading import create_worker

        self.model_card = FileEdit(
            label="model card (empty = demo model)", mode="r", filter="*.json", nullable=True, value=None
        )
        self.device = ComboBox(label="device", choices=[DEFAULT_DEVICE, "cpu"], value=DEFAULT_DEVICE)
        self.trust_pickle = CheckBox(text="trust a pickled model file (runs code from it)", value=False)
        self.widgets = [self.model_card, self.device, self.trust_pickle]
        self.devices_worker = create_worker(available_devices_job, _start_thread=False)
        self.devices_worker.returned.connect(self._set_devices)
        self.devices_worker.start()

    def _set_devices(self, devices):
        self.device.choices = devices
        self.device.value = DEFAULT_DEVICE

    @property
    def model_path(self) -> str | None:
        return optional_path(self.model_card.value)

    def load_options(self) -> dict:
        """``{"model_path", "device", "trust_pickle"}`` for a worker job (see :func:`load_model_job`)."""
        return {"model_path": self.model_path, "device": self.device.value, "trust_pickle": self.trust_pickle.value}


def load_model_job(model_path, device=DEFAULT_DEVICE, trust_pickle=False):
    """In a worker: the model of the card (the demo model when ``model_path`` is None), with torch's threads capped
    so the viewer keeps a core (:func:`leave_a_core`): every dock that runs a model loads it here."""
    from ..models import load_model

    leave_a_core()
    return load_model(model_path or None, device=device, trust_pickle=trust_pickle)


def leave_a_core() -> int:
    """Cap torch's threads at the cores this process may use less one, so the viewer's main thread keeps a core
    while a worker computes (the viewer froze to 3-4 Hz with every core busy); returns the number of threads."""
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    threads = max(1, min(torch.get_num_threads(), cores - 1))
    torch.set_num_threads(threads)
    return threads
