"""run_demo follows the run contract: a result dataclass (the CLI renders the text), partial results on cancel."""

import json
import threading

from napari_global_xai.cli.demo import demo_text
from napari_global_xai.control import RunControl
from napari_global_xai.demo import DemoResult, run_demo


def test_a_cancelled_demo_returns_its_dataclass_writes_the_partial_run_and_skips_peppr(tmp_path):
    stop = threading.Event()
    stages = []

    def progress(done, total, stage):
        stages.append(stage)
        stop.set()  # cancel as soon as the first batch is reported

    result = run_demo(tmp_path, method="gradcam", device="cpu", control=RunControl(progress, stop))
    assert isinstance(result, DemoResult) and result.cancelled
    assert result.peppr is None and result.report == {} and stages[0] == "explain"
    assert result.explain.cancelled and result.explain.n_computed == 0 and result.n_images == 64
    summary = json.loads((tmp_path / "explain_gradcam" / "explain_summary.json").read_text())
    assert summary["provenance"]["status"] == "CANCELLED"
    assert not (tmp_path / "peppr_gradcam").exists() and not (tmp_path / "report.html").exists()
    text = demo_text(result)
    assert "0 gradcam maps (CANCELLED: no PEPPR, no report)" in text and str(tmp_path.resolve()) in text
