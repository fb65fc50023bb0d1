"""The HTML report: built from a small real results folder, opened in headless Chromium, every image decoded, no
external request; the PDF of its figures; the section registry on results nobody on the project wrote."""

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from napari_global_xai.cli import main
from napari_global_xai.models import DEMO_CARD_PATH
from napari_global_xai.report import JOB_REPORTS, build_sections, section_rules, write_report
from napari_global_xai.report_parts import SECTION_RULES, Section, register_section

from _timeouts import HANG_GUARD_S

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    # network off: every host resolves to nothing and any proxy use fails
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory, one_torch_thread):
    """A demo-shaped results folder: explain_saliency/ and peppr_saliency/ on 6 sample images, demo model."""
    from napari_global_xai.config import ExplainConfig, PepprConfig
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.models import load_model
    from napari_global_xai.peppr.pipeline import run_peppr_pipeline
    from napari_global_xai.samples import load_sample_stack

    if not DEMO_CARD_PATH.exists():
        pytest.skip("demo model not trained")
    root = tmp_path_factory.mktemp("results")
    stack = load_sample_stack().subset(np.arange(6))
    model = load_model(None, device="cpu")
    explained = run_explain(
        stack, model, ExplainConfig(method="saliency", subset="all"), out_dir=root / "explain_saliency"
    )
    run_peppr_pipeline(
        stack,
        model,
        explained.global_maps,
        PepprConfig(fractions=(0, 0.1, 0.5, 1), random_seeds=2, filled_fractions=(0.1, 0.5)),
        out_dir=root / "peppr_saliency",
    )
    return root


class _Refs(HTMLParser):
    """Every URL-bearing attribute value and every <img> of a page."""

    def __init__(self):
        super().__init__()
        self.urls, self.images = [], []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action", "background") and value is not None:
                self.urls.append((tag, name, value))
        if tag == "img":
            self.images.append(dict(attrs))
        if tag in ("script", "iframe", "object", "embed", "link"):
            self.urls.append((tag, "tag", tag))


def _decode(uri: str) -> np.ndarray:
    from PIL import Image

    header, payload = uri.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64"), header
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))))


def test_report_html_is_self_contained_and_complete(results, tmp_path):
    paths = write_report(results, tmp_path / "report.html")
    text = paths["html"].read_text()
    parser = _Refs()
    parser.feed(text)
    # no external reference: every URL is a data: URI or an in-page anchor, no script/iframe/link tags, no CSS url()
    assert parser.urls and all(v.startswith(("data:", "#")) for _, _, v in parser.urls), [
        u for u in parser.urls if not u[2].startswith(("data:", "#"))
    ]
    assert "url(" not in text and "@import" not in text
    anchors = {v[1:] for t, n, v in parser.urls if v.startswith("#")}
    assert anchors <= set(re.findall(r'id="([^"]+)"', text))  # every navigation link has its target
    # sections found for both runs, with the numbers of the files they came from
    summary = json.loads((results / "peppr_saliency" / "peppr_summary.json").read_text())
    for row in summary["table"]:
        assert f"{row['A_erase']:.3f}" in text and f"{row['gap']:+.3f}" in text
    # the curves read back from the CSV give the engine's areas (independent trapezoid areas of the rebuilt curves)
    from napari_global_xai.peppr import curve_area
    from napari_global_xai.peppr.result import PepprResult
    from napari_global_xai.peppr.view import view_from_result

    view = view_from_result(PepprResult.open(results / "peppr_saliency"))
    for row in summary["table"]:
        for mode in ("erase", "restore"):
            area = curve_area(view.fractions, view.curve(row["map"], mode, row["label"]))
            assert float(area) == pytest.approx(row[f"A_{mode}"], abs=1e-9)
    assert view.random[("erase", "macro")].shape == (2, 4)  # two random seeds, four fractions
    prov = json.loads((results / "explain_saliency" / "explain_summary.json").read_text())["provenance"]
    assert prov["model"]["weights_sha256_fast"] in text and prov["inputs"][0]["sha256_fast"] in text
    assert "Global maps · saliency" in text and "PEPPR faithfulness" in text and "Provenance" in text
    # every embedded image decodes: the overlay figure and the PEPPR figure (curves, table, filmstrip)
    images = [_decode(img["src"]) for img in parser.images]
    assert len(images) == 2 and all(im.shape[0] > 200 and im.shape[1] > 400 for im in images)
    assert all(max(im.shape[:2]) <= 1400 for im in images)
    # the PDF holds one page per figure and per table
    pdf = paths["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF")
    n_tables = sum(len(s.tables) for s in build_sections(results))
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 2 + n_tables
    assert not list(tmp_path.glob(".*"))  # no partial files left behind


_CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const external = performance.getEntriesByType("resource").filter(e => !e.name.startsWith("data:"));
  document.body.dataset.images = imgs.length;
  document.body.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.widths = imgs.map(i => i.naturalWidth).join(",");
  document.body.dataset.external = external.map(e => e.name).join(" ");
  document.body.dataset.checked = "yes";
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_in_headless_chromium(results, tmp_path):
    """Chromium with the network off: the page renders, every <img> decodes, no resource is fetched."""
    from PIL import Image

    paths = write_report(results, tmp_path / "report.html", pdf=False)
    size_mb = paths["html"].stat().st_size / 1e6
    print(f"report size: {size_mb:.2f} MB")
    # a copy with a check script (the report itself carries no script)
    probe = tmp_path / "probe.html"
    probe.write_text(paths["html"].read_text().replace("</body>", _CHECK + "</body>"))
    profile = tmp_path / "profile"
    base = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*base, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert 'data-checked="yes"' in dom.stdout, dom.stderr[-2000:]
    attrs = dict(re.findall(r'data-(images|decoded|widths|external)="([^"]*)"', dom.stdout))
    assert int(attrs["images"]) == 2 and attrs["decoded"] == attrs["images"], attrs
    assert all(int(w) > 400 for w in attrs["widths"].split(","))
    assert attrs["external"] == "", attrs["external"]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report_chromium.png"
    run = subprocess.run(
        [*base, "--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}", paths["html"].as_uri()],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    assert pixels.shape[:2] == (2400, 1280)
    assert pixels.std() > 20  # rendered content, not a blank page
    header = pixels[:40, :, :].mean(axis=(0, 1))
    assert header.max() < 80  # the dark header band is drawn (the page's CSS applied)


def test_cli_report_and_bad_input(results, tmp_path, capsys):
    assert main(["report", str(results / "peppr_saliency"), "--out", str(tmp_path / "r.html"), "--no-pdf"]) == 0
    assert "MB)" in capsys.readouterr().out
    text = (tmp_path / "r.html").read_text()
    assert "PEPPR faithfulness" in text and "Global maps" not in text  # only the folder given
    assert not (tmp_path / "r.pdf").exists()
    # a folder without results, a missing folder, a non-HTML name: one line each, no file written
    (tmp_path / "empty").mkdir()
    for args in (
        ["report", str(tmp_path / "empty"), "--out", str(tmp_path / "x.html")],
        ["report", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")],
        ["report", str(results), "--out", str(tmp_path / "x.txt")],
    ):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith("global-xai report: error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.html").exists()


def test_each_job_lists_its_own_sections():
    """Every job's report module holds its rules; the builder tries them, then the fallbacks, by order."""
    import importlib

    rules = section_rules()
    assert [r.order for r in rules] == sorted(r.order for r in rules)
    patterns = [r.pattern for r in rules]
    for name in JOB_REPORTS:
        job_rules = importlib.import_module(f"napari_global_xai.{name}").RULES
        assert job_rules and all(r.pattern in patterns and r.order < 90 for r in job_rules), name
    assert patterns[:3] == ["explain_summary.json", "peppr_summary.json", "sag_summary.json"]
    assert patterns[-4:] == ["*.json", "*.csv", "*.png", "*.jpg"]


def test_registry_renders_unknown_and_registered_results(tmp_path):
    """Results another tool wrote: a registered pattern gets its renderer, unknown JSON/CSV/PNG a generic view."""
    from PIL import Image

    run = tmp_path / "analysis_run"
    run.mkdir()
    (run / "sanity_check.json").write_text(
        json.dumps(
            {
                "method": "ig",
                "rank_correlation": 0.12,
                "layers": [{"layer": "conv1", "ssim": 0.31}, {"layer": "fc", "ssim": 0.05}],
            }
        )
    )
    (run / "regions_table.csv").write_text("region,share\n" + "".join(f"r{i},{i / 40:.3f}\n" for i in range(40)))
    (run / "my_thing.json").write_text(json.dumps({"alpha": 1.5, "nested": {"beta": [1, 2]}}))
    Image.fromarray(np.full((30, 50, 3), 200, np.uint8)).save(run / "extra_plot.png")
    (run / "weird.csv").write_text("a;b\n")
    seen = []

    def my_renderer(path, folder, root):
        seen.append(path.name)
        return Section("My custom thing", path.name, facts=[("alpha", "1.5")]), {path}

    register_section("my_*.json", my_renderer, order=45)
    try:
        sections = {s.title: s for s in build_sections(tmp_path)}
    finally:
        SECTION_RULES.pop()
    assert seen == ["my_thing.json"] and "My custom thing" in sections
    sanity = sections["Sanity check (model randomisation)"]
    assert sanity.tables[0].header == ["layer", "ssim"] and sanity.tables[0].rows[1] == ["fc", "0.05"]
    assert ("rank_correlation", "0.12") in sanity.facts
    regions = sections["Region table"].tables[0]
    assert len(regions.rows) == 25 and "of 40 rows" in regions.note and regions.rows[3] == ["r3", "0.075"]
    assert sections["extra plot"].figures[0].pixels.shape == (30, 50, 3)
    assert sections["weird"].tables[0].header == ["a;b"]
    out = write_report(tmp_path, tmp_path / "out" / "report.html")
    assert _decode(re.search(r'src="(data:[^"]+)"', out["html"].read_text()).group(1)).shape[:2] == (30, 50)
