"""How long the napari main thread stalls while the Explain dock computes and while its result layers arrive.

A 10 ms timer ticks in the main thread; the gaps between ticks are recorded in three phases of one run: idle (the
viewer with the sample open, nothing running: the baseline), compute (the pipeline runs in a worker thread) and
layers (results added one layer per event-loop turn). Printed: median / p95 / max gap per phase and each phase's
max over the idle max. The test suite checks the behaviour (work off the main thread, one layer per turn); this
script measures the time, which depends on the machine and its load.

    xvfb-run -a .venv/bin/python benchmarks/bench_ui_stall.py [--method saliency] [--idle-seconds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="saliency")
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    args = parser.parse_args()

    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_global_xai._qt.explain_widget import ExplainWidget

    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-global-xai", "uwf_sample")
    widget = ExplainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_layer.reset_choices()
    widget.image_layer.value = viewer.layers["uwf_sample"]
    widget.method.value = args.method
    app = napari.qt.get_app()

    gaps = {"idle": [], "compute": [], "layers": []}
    phase, last = ["idle"], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps[phase[0]].append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    loop = QEventLoop()
    QTimer.singleShot(int(args.idle_seconds * 1000), loop.quit)
    loop.exec()

    widget.run_panel.succeeded.connect(lambda _r: phase.__setitem__(0, "layers"))
    widget.feeder.done.connect(loop.quit)
    phase[0] = "compute"
    last[0] = time.perf_counter()
    widget.start()
    loop.exec()
    timer.stop()
    app.processEvents()

    idle_max = max(gaps["idle"])
    print(f"main-thread gaps of a 10 ms timer, Explain dock ({args.method}) on the sample stack")
    print(f"{'phase':<8} {'ticks':>6} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'max / idle max':>15}")
    for name, values in gaps.items():
        v = np.array(values) * 1000
        print(
            f"{name:<8} {len(v):>6} {np.median(v):>10.1f} {np.percentile(v, 95):>8.1f} {v.max():>8.1f} "
            f"{v.max() / (idle_max * 1000):>15.2f}"
        )
    viewer.close()


if __name__ == "__main__":
    main()
