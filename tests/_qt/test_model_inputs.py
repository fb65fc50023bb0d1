"""Every dock that runs a model takes the user's model the same way: card, device and trust-pickle, passed to its
worker job exactly as the CLI passes ``--model``, ``--device`` and ``--trust-pickle``."""

import pytest
import torch
from torch import nn

from napari_global_xai._qt.concepts_widget import ConceptsWidget
from napari_global_xai._qt.explain_widget import ExplainWidget
from napari_global_xai._qt.sag_widget import SagWidget
from napari_global_xai._qt.sanity_widget import SanityWidget

from _timeouts import HANG_GUARD_MS


class _Pickled(nn.Module):
    """A user's model saved whole with ``torch.save(model)``: loading it runs code, so it needs explicit trust."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("dock_class", [ExplainWidget, SagWidget, ConceptsWidget, SanityWidget])
def test_dock_passes_card_device_and_trust_to_its_job(dock_class, sample_dock, qtbot, tmp_path, monkeypatch):
    viewer, dock = sample_dock(dock_class)
    qtbot.waitUntil(lambda: not dock.model_inputs.devices_worker.is_running, timeout=HANG_GUARD_MS)
    assert dock.device.choices[0] == "auto" and "cpu" in dock.device.choices
    for widget in dock.model_inputs.widgets:  # in the form or in its collapsed "Advanced options" group
        shown = widget in list(dock.form) or dock.isAncestorOf(widget.native)
        assert shown, f"{dock_class.__name__} does not show {widget.label or widget.text!r}"
    card = tmp_path / "user.card.json"
    card.write_text(
        '{"labels": ["haemorrhage", "peripheral_lesion", "disc_swelling", "arcade_lesion", '
        '"any_disease"], "weights": "user.pt", "format": "pickle", "input_channels": [0, 1]}'
    )
    captured = {}
    monkeypatch.setattr(dock.run_panel, "launch", lambda function, on_result, **kwargs: captured.update(kwargs))
    dock.model_card.value = card
    dock.device.value = "cpu"
    dock.trust_pickle.value = True
    dock.start()
    assert {k: captured.get(k) for k in ("model_path", "device", "trust_pickle")} == {
        "model_path": str(card),
        "device": "cpu",
        "trust_pickle": True,
    }


def test_a_pickled_model_needs_trust_in_the_dock_too(sample_dock, qtbot, tmp_path):
    viewer, dock = sample_dock(ConceptsWidget)
    torch.save(_Pickled(), tmp_path / "user.pt")
    card = tmp_path / "user.card.json"
    card.write_text(
        '{"labels": ["haemorrhage", "peripheral_lesion", "disc_swelling", "arcade_lesion", '
        '"any_disease"], "weights": "user.pt", "format": "pickle", "input_channels": [0, 1]}'
    )
    dock.model_card.value = card
    dock.k.value = 2
    with qtbot.waitSignal(dock.run_panel.failed, timeout=HANG_GUARD_MS) as blocker:
        dock.start()
    assert "trust" in str(blocker.args[0]).lower()


def test_every_dock_loads_its_model_leaving_the_viewer_a_core():
    """The docks' model loader caps torch's threads at the usable cores less one (the Explain, PEPPR, SAG, concepts
    and sanity jobs all load through it), and never raises a lower cap."""
    import os

    from napari_global_xai._qt import _model_inputs

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(cores)
        model = _model_inputs.load_model_job(None, "cpu")
        assert model.labels and torch.get_num_threads() == max(1, cores - 1)
        torch.set_num_threads(1)
        _model_inputs.load_model_job(None, "cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
