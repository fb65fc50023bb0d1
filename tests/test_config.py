"""Run settings are validated on construction; choice lists have one source; no torch needed."""

import subprocess
import sys
import threading

import pytest

from napari_global_xai.analysis_config import CompareConfig, ConceptConfig, RegionsConfig, SanityConfig
from napari_global_xai.config import FILLS, SUBSETS, ExplainConfig, PepprConfig, SagConfig, validate_choices
from napari_global_xai.control import Cancelled, RunControl


@pytest.mark.parametrize(
    "cls, kwargs, needle",
    [
        (ExplainConfig, {"compute": "al"}, "ExplainConfig.compute: unknown value 'al'; choose from subset, all"),
        (ExplainConfig, {"subset": "positives"}, "ExplainConfig.subset"),
        (ExplainConfig, {"normalisation": "sum"}, "choose from mass, max, none"),
        (ExplainConfig, {"autocast": "fp8"}, "ExplainConfig.autocast"),
        (ExplainConfig, {"chunk_size": 0}, "positive integer"),
        (ExplainConfig, {"threshold": 1.5}, "probability"),
        (PepprConfig, {"fill": "gray"}, "PepprConfig.fill: unknown value 'gray'"),
        (PepprConfig, {"fractions": (0, 0.5, 2)}, "fractions must be numbers in"),
        (PepprConfig, {"filled_fractions": (0.5, 2)}, "PepprConfig.filled_fractions: 2.0 is not a fraction"),
        (PepprConfig, {"random_seeds": -1}, "non-negative integer"),
        (PepprConfig, {"maps_for": "imagewise"}, "PepprConfig.maps_for"),
        (SagConfig, {"figure_formats": ("png", "gif")}, "unknown value 'gif'"),
        (SagConfig, {"root_threshold": 0}, "SagConfig.root_threshold"),
        (SagConfig, {"beam_width": 0}, "SagConfig.beam_width"),
        (ConceptConfig, {"feature_scale": "channel"}, "ConceptConfig.feature_scale: unknown value 'channel'"),
        (ConceptConfig, {"steps": 0}, "ConceptConfig.steps must be a positive integer"),
        (ConceptConfig, {"pull_away": -0.1}, "ConceptConfig.pull_away must be a non-negative weight"),
        (SanityConfig, {"methods": ()}, "SanityConfig.methods: give at least one method"),
        (SanityConfig, {"images": (0, -2)}, "SanityConfig.images must be image indices"),
        (SanityConfig, {"depth": -1}, "SanityConfig.depth must be a positive integer"),
        (CompareConfig, {"groups": ("a", "b", "c")}, "CompareConfig.groups must be two values"),
        (CompareConfig, {"alpha": 0}, "CompareConfig.alpha must be in (0, 1)"),
        (CompareConfig, {"n_permutations": 0}, "CompareConfig.n_permutations must be a positive integer"),
        (RegionsConfig, {"n_boot": -1}, "RegionsConfig.n_boot must be a non-negative integer"),
        (RegionsConfig, {"seed": -1}, "RegionsConfig.seed must be a non-negative integer"),
    ],
)
def test_bad_values_fail_on_construction_naming_the_field(cls, kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        cls(**kwargs)


def test_every_listed_choice_is_accepted():
    for s in SUBSETS:
        assert ExplainConfig(subset=s).subset == s
    for f in FILLS:
        assert PepprConfig(fill=f).fill == f and SagConfig(fill=f).fill == f
    assert SagConfig(figure_formats="svg").figure_formats == ("svg",)
    assert SagConfig(max_root_size=0).max_root_size is None  # 0 = no limit, as on the CLI
    assert PepprConfig(random_seeds=0).random_seeds == 0  # no random-order baseline, as on the CLI


def test_analysis_configs_read_their_inputs_as_the_cli_and_docks_give_them():
    config = SanityConfig(methods=["ig", ExplainConfig(method="gradcam")], images=[2, 0], depth=0)
    assert [c.method for c in config.methods] == ["ig", "gradcam"] and config.images == (2, 0)
    assert config.depth is None  # 0 name parts: every module alone, as the default
    assert CompareConfig(groups=["yes", "rest"]).groups == ("yes", "rest")
    assert RegionsConfig(n_boot=0).n_boot == 0  # no bootstrap intervals


def test_mutated_config_is_caught_by_validate_choices():
    cfg = ExplainConfig()
    cfg.compute = "everything"
    with pytest.raises(ValueError, match="compute"):
        validate_choices(cfg)


def test_configs_and_control_import_without_torch():
    code = (
        "import sys; import napari_global_xai.config, napari_global_xai.analysis_config, napari_global_xai.control; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_run_control_reports_stages_and_cancels_from_a_callable_or_an_event():
    seen = []
    flag = {"stop": False}
    control = RunControl(progress=lambda d, t, s: seen.append((d, t, s)), cancel=lambda: flag["stop"])
    control.report(1, 4, "predict")
    control.stage("explain")(2, 4)
    assert seen == [(1, 4, "predict"), (2, 4, "explain")]
    control.check()  # not cancelled: no exception
    flag["stop"] = True
    with pytest.raises(Cancelled) as info:
        control.check("stopped after 2", partial=[1, 2])
    assert info.value.partial == [1, 2] and "stopped after 2" in str(info.value)

    event = threading.Event()
    control = RunControl(cancel=event)
    assert control.cancel_fn() is False
    event.set()
    assert control.cancelled() and control.cancel_fn() is True
    assert RunControl().cancel_fn is None


def test_batching_cancelled_is_the_same_exception():
    from napari_global_xai.batching import Cancelled as Old

    assert Old is Cancelled
