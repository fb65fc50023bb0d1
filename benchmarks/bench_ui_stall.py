"""How long the napari main thread stalls while the Explain dock computes, while its results arrive, and while a
10,000-image results store is opened and browsed, against an idle baseline measured in the same run.

A 50 ms QTimer ticks in the main thread; every gap between ticks is recorded per phase:

- ``idle``: the viewer with the sample open, nothing running (the baseline; the CPU hog runs already);
- ``explain``: the Explain dock computes on the 64-image sample in its thread worker;
- ``hand-over (64)``: the run's layers arrive, one per event-loop turn (lazy, over the run's store);
- ``peppr``: the PEPPR dock computes the curves of the run's overall map in its thread worker (``--peppr-fractions``,
  ``--peppr-seeds``: a coarse grid and one random order by default);
- ``peppr hand-over``: PEPPR's result arrives: the figure drawn and its window opened, the ``erased`` / ``restored``
  layers added, then the first filmstrip computed in a worker and drawn (until the dock's ``filmstrip_ready``);
  the dock's two main-thread slots are also timed on their own (``slot`` lines under the table);
- ``peppr filmstrip``: the image slider moved ``--peppr-moves`` times, each move waiting for its filmstrip;
- ``open (N store)``: ``viewer.open`` of an N-image results store through the plugin reader (napari adds a
  reader's layers in one go: each open is one blocking call, reported as its duration), twice, alternating with
  a 20-image store of the same layers (``open (20 store)``: the part of the cost that does not grow with N);
- ``hand-over (N store)``: the same store's layers prepared in a thread and fed through the dock's feeder, one
  per turn (what the dock does with a run of N images);
- ``scrub (N store)``: the image slider moved every 100 ms with the image-wise maps visible.

A hand-over phase begins when the run's result reaches the main thread, and the gap that holds the result's slot
counts in it. Printed per phase: ticks, median, p95 and max gap, the share of gaps over 200 ms, p95 / idle p95, and
the longest event-loop pass (one ``processEvents`` call: one dispatcher iteration, the longest the viewer could not
take input). The two differ where work is cut into posted events (a layer per event, the canvas's deferred draw):
Qt's glib dispatcher runs a timer that has just fired at idle priority for the next pass, so while each pass posts
the next piece of work the timer fires every other pass, and a gap spans two pieces (measured: a chain of 100 ms
pieces gives 200 ms gaps and 100 ms passes).
A CPU hog (``yes > /dev/null``, one process) runs beside the viewer unless ``--no-hog``; torch in the dock's worker
leaves the main thread a core (``_model_inputs.leave_a_core``, called by every dock that loads a model). The N-image
store is synthetic (96 x 128 maps, 2 labels, written by the store's own writer, ``tests/_synthetic_store.py``) unless
``--store`` names one.

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python benchmarks/bench_ui_stall.py \\
        [--method saliency] [--idle-seconds 5] [--store-images 10000] [--store PATH] [--no-hog] \\
        [--peppr-fractions "0, 0.1, 1"] [--peppr-seeds 1] [--peppr-moves 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TICK_MS = 50
#: Images of the small store opened beside the large one (the open's cost that does not depend on n).
SMALL = 20
#: Phase of the housekeeping between the measured phases (removing layers, waiting): not reported.
SETUP = "setup"


class GapRecorder:
    """Gaps between the ticks of a main-thread timer, and the event loop's passes (:func:`wait`), filed under the
    current phase."""

    #: The recorder :func:`wait` files its passes with (the latest made).
    active: GapRecorder | None = None

    def __init__(self):
        from qtpy.QtCore import QTimer

        GapRecorder.active = self
        self.gaps: dict[str, list[float]] = {}
        self.passes: dict[str, list[float]] = {}
        self.phase = "idle"
        self.last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self.tick)

    def start(self, phase: str, keep_gap: bool = False) -> None:
        """File the gaps under ``phase`` from now on; ``keep_gap``: the gap under way (e.g. the slot that called this)
        counts in ``phase`` too, instead of being dropped."""
        self.phase = phase
        if not (keep_gap and self.timer.isActive()):
            self.last = time.perf_counter()
        self.gaps.setdefault(phase, [])
        if not self.timer.isActive():
            self.timer.start()

    def tick(self) -> None:
        now = time.perf_counter()
        self.gaps[self.phase].append(now - self.last)
        self.last = now

    def add(self, phase: str, seconds: float) -> None:
        """A blocking call of known duration, filed as one gap."""
        self.gaps.setdefault(phase, []).append(seconds)


def wait(app, until, timeout_s: float = 3600) -> None:
    """Run the event loop until ``until()`` is true, one pass (``processEvents``: one iteration of the dispatcher)
    at a time, each pass's duration filed under the recorder's phase."""
    end = time.perf_counter() + timeout_s
    while not until():
        t = time.perf_counter()
        app.processEvents()
        rec = GapRecorder.active
        if rec is not None:
            rec.passes.setdefault(rec.phase, []).append(time.perf_counter() - t)
        time.sleep(0.001)
        if time.perf_counter() > end:
            raise TimeoutError("the phase did not finish")


def sleep_in_loop(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    wait(app, lambda: time.perf_counter() >= end)


def timed_slot(owner, name: str, seconds: dict) -> None:
    """Replace ``owner.name`` (a bound method, looked up when it is connected) by one that files its duration."""
    slot = getattr(owner, name)

    def wrapper(*args):
        t = time.perf_counter()
        try:
            return slot(*args)
        finally:
            seconds.setdefault(name, []).append(time.perf_counter() - t)

    setattr(owner, name, wrapper)


#: Where the synthetic stores are written: removed when the benchmark ends.
SCRATCH = tempfile.TemporaryDirectory(prefix="bench-ui-")


def make_store(n: int, quiet: bool = False) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _synthetic_store import write_synthetic_store

    folder = Path(tempfile.mkdtemp(prefix=f"store-{n}-", dir=SCRATCH.name))
    t = time.perf_counter()
    root = write_synthetic_store(folder, n, shape=(96, 128), chunk_size=500)
    if not quiet:
        print(f"wrote a {n}-image store in {time.perf_counter() - t:.0f} s: {root}", flush=True)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="saliency")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--store-images", type=int, default=10_000)
    parser.add_argument("--store", help="an existing results store (image_maps.zarr) instead of a synthetic one")
    parser.add_argument("--no-hog", action="store_true", help="no CPU hog beside the viewer")
    parser.add_argument("--peppr-fractions", default="0, 0.1, 1", help="the PEPPR dock's fraction grid")
    parser.add_argument("--peppr-seeds", type=int, default=1, help="the PEPPR dock's random orders")
    parser.add_argument("--peppr-moves", type=int, default=3, help="image-slider moves, each with its filmstrip")
    args = parser.parse_args()

    store = Path(args.store) if args.store else make_store(args.store_images)
    hog = None if args.no_hog else subprocess.Popen(["sh", "-c", "exec yes > /dev/null"])
    try:
        run(args, store)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def run(args, store: Path) -> None:
    import napari

    from napari_global_xai._layers import explain_layer_data
    from napari_global_xai._qt.explain_widget import ExplainWidget
    from napari_global_xai.explain.result import open_explain

    app = napari.qt.get_qapp()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1280, 800)
    viewer.open_sample("napari-global-xai", "uwf_sample")
    widget = ExplainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_layer.reset_choices()
    widget.image_layer.value = viewer.layers["uwf_sample"]
    widget.method.value = args.method
    rec = GapRecorder()
    rec.start("idle")
    sleep_in_loop(app, args.idle_seconds)

    done = {"run": False}
    widget.run_panel.succeeded.connect(
        lambda _r: (rec.start("hand-over (64)", keep_gap=True), done.__setitem__("run", True))
    )
    rec.start("explain")
    t = time.perf_counter()
    widget.start()
    wait(app, lambda: done["run"])
    explain_s = time.perf_counter() - t
    wait(app, lambda: not widget.feeder.busy and viewer.layers[-1].name.startswith("overall"))
    rec.start(SETUP)  # housekeeping between phases: not reported
    sleep_in_loop(app, 1.0)
    peppr = peppr_phases(app, viewer, rec, args)

    n = len(open_explain(store).image_ids)
    small = make_store(SMALL, quiet=True)  # the same layers over 20 images: what the open costs whatever n
    open_s = 0.0
    for path, images in ((small, SMALL), (store, n), (small, SMALL), (store, n)):
        viewer.layers.clear()
        app.processEvents()
        t = time.perf_counter()
        viewer.open(str(path), plugin="napari-global-xai")
        seconds = time.perf_counter() - t
        open_s = seconds if images == n else open_s
        rec.start(SETUP)
        rec.add(f"open ({images} store)", seconds)
        sleep_in_loop(app, 1.0)

    viewer.layers.clear()
    app.processEvents()
    prepared = {}
    thread = threading.Thread(target=lambda: prepared.update(layers=explain_layer_data(open_explain(store))))
    rec.start(f"prepare ({n} store, worker)")
    thread.start()
    wait(app, lambda: not thread.is_alive())
    rec.start(f"hand-over ({n} store)")
    widget.feeder.feed(prepared["layers"])
    wait(app, lambda: not widget.feeder.busy)
    rec.start(SETUP)
    sleep_in_loop(app, 0.2)

    maps = next(layer for layer in viewer.layers if layer.name.startswith("image-wise"))
    maps.visible = True
    axis = list(viewer.dims.axis_labels).index("image")
    rec.start(f"scrub ({n} store)")
    for k in range(40):
        viewer.dims.set_current_step(axis, (k * 997) % n)
        sleep_in_loop(app, 0.1)
    rec.timer.stop()
    app.processEvents()

    report(rec, args, n, explain_s, open_s, store)
    print(f"PEPPR ({args.peppr_fractions}; {args.peppr_seeds} random order) run {peppr['run_s']:.1f} s")
    for name, values in peppr["slots"].items():
        print(f"slot {name}: " + ", ".join(f"{1000 * v:.0f} ms" for v in values))
    viewer.screenshot(str(Path(tempfile.gettempdir()) / "bench_ui_stall_store.png"), canvas_only=False)
    viewer.close()


def peppr_phases(app, viewer, rec: GapRecorder, args) -> dict:
    """PEPPR on the Explain run's overall map: the run, its hand-over (figure, layers, first filmstrip) and
    filmstrips following the image slider. Returns the run's seconds and the timed slots'."""
    from napari_global_xai._qt.peppr_widget import PepprWidget

    panel = PepprWidget(viewer)
    viewer.window.add_dock_widget(panel, name="PEPPR", area="right", tabify=True)
    panel.map_layers.reset_choices()
    panel.select_maps(viewer.layers[f"overall · {args.method}"])
    panel.fractions.value = args.peppr_fractions
    panel.random_seeds.value = args.peppr_seeds
    slots: dict[str, list[float]] = {}
    timed_slot(panel, "_on_result", slots)  # connected when the run / each filmstrip is launched: wrap them first
    timed_slot(panel, "_on_filmstrip", slots)
    films = {"n": 0}
    panel.filmstrip_ready.connect(lambda: films.__setitem__("n", films["n"] + 1))
    panel.run_panel.succeeded.connect(lambda _r: rec.start("peppr hand-over", keep_gap=True))
    rec.start("peppr")
    t = time.perf_counter()
    if panel.start() is None:
        raise RuntimeError(f"PEPPR did not start: {panel.run_panel.status.text()}")
    wait(app, lambda: panel.result is not None or panel.run_panel.status.text().startswith("error"))
    run_s = time.perf_counter() - t
    if panel.result is None:
        raise RuntimeError(f"PEPPR failed: {panel.run_panel.status.text()}")
    wait(app, lambda: films["n"] >= 1 and panel.run_panel.worker is None)
    sleep_in_loop(app, 0.3)  # the canvas's deferred draw (draw_idle) runs in these turns
    axis = viewer.dims.ndim - 3  # the stack slider (image-wise maps add a label axis in front)
    rec.start("peppr filmstrip")
    for k in range(args.peppr_moves):
        wanted = films["n"] + 1
        viewer.dims.set_current_step(axis, (7 + 13 * k) % 64)
        wait(app, lambda wanted=wanted: films["n"] >= wanted)
        sleep_in_loop(app, 0.3)
    rec.start(SETUP)
    viewer.dims.events.current_step.disconnect(panel._on_slider)  # no filmstrips while the store phases scrub
    panel.figure_window.close()
    viewer.window.remove_dock_widget(panel)
    return {"run_s": run_s, "slots": slots}


def report(rec: GapRecorder, args, n: int, explain_s: float, open_s: float, store: Path) -> None:
    gaps = rec.gaps
    idle = np.array(gaps["idle"]) * 1000
    idle_p95 = np.percentile(idle, 95)
    hog = "no hog" if args.no_hog else "CPU hog (yes > /dev/null) beside it"
    print(f"\nmain-thread gaps of a {TICK_MS} ms timer; Explain ({args.method}) on the 64-image sample, {hog}")
    print(f"explain run {explain_s:.1f} s; viewer.open of the {n}-image store {open_s:.2f} s ({store})")
    print("| phase | ticks | median ms | p95 ms | max ms | gaps > 200 ms | p95 / idle p95 | longest pass ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, values in gaps.items():
        if name == SETUP or not values:
            continue
        v = np.array(values) * 1000
        share = float(np.mean(v > 200)) * 100
        passes = rec.passes.get(name)
        longest = f"{max(passes) * 1000:.0f}" if passes else "—"  # a blocking call (open) has no passes
        print(
            f"| {name} | {len(v)} | {np.median(v):.0f} | {np.percentile(v, 95):.0f} | {v.max():.0f} | "
            f"{share:.0f} % | {np.percentile(v, 95) / idle_p95:.2f} | {longest} |"
        )


if __name__ == "__main__":
    main()
