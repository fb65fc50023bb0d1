"""Every CLI choice list and run default is read from napari_global_xai.config (one source), found by walking the
argparse parser itself; and the CLI's progress / Ctrl-C adapter is one RunControl."""

import argparse
import threading

import pytest

from napari_global_xai import config
from napari_global_xai.analysis_config import COHORT_REFERENCES, COMPARE_NORMALISATIONS
from napari_global_xai.cli import build_parser

#: option -> the config tuple its choices must equal
CHOICES = {
    "--subset": config.SUBSETS,
    "--compute": config.COMPUTE,
    "--normalisation": config.NORMALISATIONS,
    "--reduction": config.REDUCTIONS,
    "--autocast": config.AUTOCASTS,
    "--fill": config.FILLS,
    "--figure-formats": config.FIGURE_FORMATS,
    "--format": config.FORMATS,
    "--map-dtype": config.MAP_DTYPES,
    "--reference": COHORT_REFERENCES,
    "--maps-as": COMPARE_NORMALISATIONS,
}
#: options whose choices are not run settings: the model card's (models.card, also torch-free)
OTHER_CHOICES = {"--activation"}


def _subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _options(sub):
    return {opt: a for a in sub._actions for opt in a.option_strings}


def test_every_choice_list_is_a_config_tuple():
    seen = set()
    for command, sub in _subparsers(build_parser()).items():
        for option, action in _options(sub).items():
            if action.choices is None or not option.startswith("--") or option in OTHER_CHOICES:
                continue
            assert option in CHOICES, f"{command} {option}: choices {action.choices} not from config"
            assert tuple(action.choices) == CHOICES[option], (command, option)
            seen.add(option)
    assert seen == set(CHOICES)  # every config choice list is offered somewhere
    from napari_global_xai.models.card import ACTIVATIONS

    assert tuple(_options(_subparsers(build_parser())["card"])["--activation"].choices) == ACTIVATIONS


@pytest.mark.parametrize(
    "command, defaults, fields",
    [
        ("explain", config.ExplainConfig(), ["method", "subset", "compute", "normalisation", "reduction", "autocast"]),
        ("sanity", config.ExplainConfig(), ["normalisation", "reduction"]),
        ("peppr", config.PepprConfig(), ["fill", "random_seeds"]),
        ("sag", config.SagConfig(), ["method", "fill", "max_root_size", "figure_formats"]),
        ("demo", config.ExplainConfig(), ["method"]),
    ],
)
def test_defaults_are_the_config_defaults(command, defaults, fields):
    sub = _subparsers(build_parser())[command]
    for name in fields:
        value = sub.get_default(name)
        expected = getattr(defaults, name)
        assert (tuple(value) if isinstance(value, list) else value) == expected, (command, name, value, expected)


def test_parsed_choices_round_trip_into_validated_configs():
    parser = build_parser()
    for subset in config.SUBSETS:
        args = parser.parse_args(["explain", "s.tif", "--out", "o", "--subset", subset, "--compute", "all"])
        from napari_global_xai.cli.explain import explain_config

        assert explain_config(args).subset == subset
    with pytest.raises(SystemExit):
        parser.parse_args(["explain", "s.tif", "--out", "o", "--compute", "al"])  # a typo is refused


def test_run_control_reports_to_the_bar_and_cancels_on_the_event():
    from napari_global_xai.cli._common import _run_control
    from napari_global_xai.control import RunControl

    with _run_control(quiet=False) as control:
        assert isinstance(control, RunControl) and isinstance(control.cancel, threading.Event)
        control.report(2, 5, "explain")
        assert control.progress.stage == "explain" and control.progress.bar.n == 2
        assert not control.cancelled()
        control.cancel.set()  # what the SIGINT handler does
        assert control.cancelled() and control.cancel_fn()


def test_analyses_and_concepts_defaults_are_their_configs_defaults():
    from napari_global_xai.analysis_config import (
        SANITY_METHODS,
        CompareConfig,
        ConceptConfig,
        RegionsConfig,
        SanityConfig,
    )

    subs = _subparsers(build_parser())
    for command, defaults, names in (
        ("sanity", SanityConfig(), {n: n for n in ("images", "n_images", "label", "depth", "independent", "seed")}),
        (
            "compare",
            CompareConfig(),
            {n: n for n in ("groups", "threshold", "n_permutations", "alpha", "seed", "normalisation")}
            | {"max_permutations": "max_permutations", "smooth_sigma": "smooth_sigma"},
        ),
        ("regions", RegionsConfig(), {"n_boot": "n_boot", "seed": "seed"}),
        ("concepts", ConceptConfig(), {"k": "k", "steps": "steps", "seed": "seed", "layer": "layer", "top": "top_n"}),
    ):
        for option, name in names.items():
            assert subs[command].get_default(option) == getattr(defaults, name), (command, option)
    assert subs["sanity"].get_default("method") == list(SANITY_METHODS)
    assert [c.method for c in SanityConfig().methods] == list(SANITY_METHODS)


def test_parsed_analyses_options_make_their_configs():
    from napari_global_xai.cli.sanity import _sanity_config

    parser = build_parser()
    args = parser.parse_args(
        ["sanity", "s.tif", "--out", "o", "--method", "ig", "--param", "ig.n_steps=4", "--depth", "0", "--seed", "3"]
    )
    config = _sanity_config(args)
    assert [(c.method, c.params) for c in config.methods] == [("ig", {"n_steps": 4})]
    assert config.depth is None and config.seed == 3  # depth 0: every module alone, as the default
    for argv in (
        ["sanity", "s.tif", "--out", "o", "--n-images", "0"],
        ["compare", "e", "--csv", "c.csv", "--column", "g", "--out", "o", "--n-permutations", "0"],
        ["regions", "e", "--out", "o", "--n-boot", "-1"],
        ["concepts", "s.tif", "--out", "o", "--k", "0"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)


def test_every_device_option_reads_the_config():
    for command, sub in _subparsers(build_parser()).items():
        action = _options(sub).get("--device")
        if action is None:
            continue
        assert action.default == config.DEFAULT_DEVICE, command
        assert all(name in action.help for name in config.DEVICES), command


def test_every_command_and_option_has_help():
    """Each sub-command has a summary (its line in ``global-xai --help`` and its own help's description), and every
    option and positional argument of the CLI has help text."""
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in action._choices_actions}
    missing = []
    for command, sub in [("", parser), *action.choices.items()]:
        if command and not (summaries.get(command) and sub.description):
            missing.append(f"{command}: no summary or description")
        for a in sub._actions:
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction) and not (a.help or "").strip():
                missing.append(f"{command or 'global-xai'} {'/'.join(a.option_strings) or a.dest}")
    assert not missing, missing


def test_defaults_of_the_other_commands_are_their_functions_defaults():
    """train-demo and make-sample-data name their defaults in the torch-free parser: they must equal the ones of the
    code they run (train_demo_model, write_sample_data)."""
    from napari_global_xai import samples
    from napari_global_xai.models.train_demo import train_demo_model

    subs = _subparsers(build_parser())
    train = config.signature_defaults(train_demo_model)
    for name in ("n_train", "epochs", "seed", "max_lr", "unseen_share", "init"):
        assert subs["train-demo"].get_default(name) == train[name], name
    sample = config.signature_defaults(samples.write_sample_data)
    assert subs["make-sample-data"].get_default("n") == sample["n"] == samples.SAMPLE_SIZE
    assert subs["make-sample-data"].get_default("seed") == sample["seed"] == samples.SAMPLE_SEED
