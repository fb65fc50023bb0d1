"""Method parameters are declared once per method (``param_rules``) and checked in one place."""

import math

import pytest

from napari_global_xai.errors import UsageError
from napari_global_xai.saliency import METHODS, get_method, method_names
from napari_global_xai.saliency.base import Choice, Float, Int, MethodParameterError, SaliencyMethod, register_method


def test_every_method_declares_a_rule_per_parameter_and_its_defaults_pass():
    for name in method_names():
        cls = METHODS[name]
        assert set(cls.param_rules) == set(cls.defaults), name
        assert all(cls.param_rules[k].accepts(v) for k, v in cls.defaults.items()), name


def test_rules_accept_and_refuse_by_type_and_range():
    steps = Int(1)
    assert steps.accepts(1) and steps.accepts(10**6)
    assert not any(steps.accepts(v) for v in (0, -3, 2.0, True, "4", None, math.nan))
    sigma = Float(0, open_low=True, none=True)
    assert sigma.accepts(None) and sigma.accepts(0.5) and sigma.accepts(2)
    assert not any(sigma.accepts(v) for v in (0, -1.0, math.inf, math.nan, False, "blur"))
    scale = Float(0, open_low=True, words=("auto",))
    assert scale.accepts("auto") and scale.accepts(1e-3) and not scale.accepts("Auto")
    grid = Int(1, pair=True)
    assert grid.accepts(28) and grid.accepts((20, 30)) and not grid.accepts((20, 0)) and not grid.accepts((1, 2, 3))
    assert Choice("a", "b").describe() == "one of 'a', 'b'"
    assert Float(0, 1, open_low=True, open_high=True).describe() == "a number > 0 and < 1"
    assert Int(1, none=True).describe() == "None (automatic) or an integer ≥ 1"


def test_ig_integration_choices_are_captums_and_adaptive():
    from captum.attr._utils.approximation_methods import SUPPORTED_METHODS

    assert set(METHODS["ig"].param_rules["integration"].choices) == set(SUPPORTED_METHODS) | {"adaptive"}


@pytest.mark.parametrize(
    "method, params, message",
    [
        ("ig", {"n_steps": 0}, "ig: parameter n_steps=0 is not allowed; expected an integer ≥ 1"),
        ("igos", {"decay": 1.0}, "igos: parameter decay=1.0 is not allowed; expected a number > 0 and < 1"),
        (
            "igos++",
            {"score_scale": -1},
            "igos++: parameter score_scale=-1 is not allowed; expected 'auto' or a number > 0",
        ),
        ("occlusion", {"stride": 0}, "occlusion: parameter stride=0 is not allowed; expected an integer ≥ 1"),
        (
            "gradcam",
            {"upsample": "linear"},
            "gradcam: parameter upsample='linear' is not allowed; expected one of "
            "'bilinear', 'nearest', 'nearest-exact', 'bicubic', 'area'",
        ),
        (
            "smoothgrad",
            {"nt_samples": 3, "seed": -1},
            "smoothgrad: parameter seed=-1 is not allowed; expected an integer ≥ 0 and ≤ 4294967295",
        ),
    ],
)
def test_bad_values_raise_one_line_naming_method_parameter_value_and_range(method, params, message, tiny_model):
    with pytest.raises(MethodParameterError) as info:
        get_method(method, tiny_model, **params)
    assert str(info.value) == message and isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


def test_a_method_without_rules_for_its_defaults_cannot_register():
    class Careless(SaliencyMethod):
        name = "careless"
        defaults = {"k": 3}

    with pytest.raises(ValueError, match="param_rules"):
        register_method(Careless)

    class Wrong(SaliencyMethod):
        name = "wrong"
        defaults = {"k": 0}
        param_rules = {"k": Int(1)}

    with pytest.raises(ValueError, match="break their own"):
        register_method(Wrong)
    assert "careless" not in METHODS and "wrong" not in METHODS
