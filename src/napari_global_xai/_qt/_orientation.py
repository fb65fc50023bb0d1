"""Keep the viewer readable while the image slider moves: the mean anatomy lies under the global maps until the
user moves through the images; then the stack itself (the image at the slider) shows under the maps.

The Explain dock adds its layers above the stack: the mean anatomy (opaque) hides the stack, which is right for the
global maps (one picture of the study) and wrong as soon as the slider moves (the stack would move unseen). A
:class:`StackUnderMaps` hides the anatomy layers it watches the first time the ``image`` slider moves after they
arrived; ticking the anatomy's eye shows it again (until the slider moves again).
"""

from __future__ import annotations

__all__ = ["IMAGE_AXIS", "StackUnderMaps"]

#: The name of the image axis of every stack and image-wise map layer of this plugin (``axis_labels``).
IMAGE_AXIS = "image"


class StackUnderMaps:
    """Hides the watched layers (by name) when the viewer's ``image`` slider moves.

    A plain object (not a QObject): napari holds its callback weakly, and it touches only the viewer's model.
    """

    def __init__(self, viewer):
        self.viewer = viewer
        self.names: list[str] = []
        self._step = self._image_step()
        viewer.dims.events.current_step.connect(self._on_step)

    def watch(self, name: str) -> None:
        """Hide layer ``name`` when the image slider next moves (from where it is now)."""
        if name not in self.names:
            self.names.append(name)
        self._step = self._image_step()

    def _image_step(self):
        labels = tuple(self.viewer.dims.axis_labels)
        return self.viewer.dims.current_step[labels.index(IMAGE_AXIS)] if IMAGE_AXIS in labels else None

    def _on_step(self, _event=None) -> None:
        step = self._image_step()
        if step is None or step == self._step:
            return
        self._step = step
        for name in self.names:
            if name in self.viewer.layers:
                self.viewer.layers[name].visible = False
