"""perturb.MaskedScorer: de-duplication, exactness against a plain per-request forward, fills, impute, cancel."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from napari_global_xai.control import Cancelled, RunControl
from napari_global_xai.perturb import KEEP_ALL, REMOVE_ALL, MaskedScorer, gaussian_blur, impute_linear
from napari_global_xai.perturb.fills import default_sigma

H, W, C = 10, 14, 2
MEAN, STD = [0.3, 0.6], [0.2, 0.5]


class Echo(nn.Module):
    """Returns its input flattened: the 'scores' are the filled image itself, so fills can be checked exactly."""

    def forward(self, x):
        return x.reshape(len(x), -1)


class Wrapped:
    """The part of a LoadedModel the scorer uses, counting the image rows forwarded."""

    def __init__(self, module, activation="sigmoid"):
        self.module = module
        self.device = torch.device("cpu")
        self.card = SimpleNamespace(mean=MEAN, std=STD, activation=activation)
        self.rows = 0
        self.calls = 0

    def scores(self, x, probability=False):
        self.rows += len(x)
        self.calls += 1
        out = self.module(x)
        return torch.sigmoid(out) if probability else out


def _images(n=5, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, C, H, W)).astype(np.float32))


def _mask_of(key, device=None):
    """Keys are (row0, row1, col0, col1) boxes removed; plain numpy so the test does not reuse library code."""
    r0, r1, c0, c1 = key
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return torch.from_numpy(m)


KEYS = [(0, 5, 0, 7), (2, 9, 3, 12), (0, 10, 0, 1), (4, 6, 4, 6)]


def _reference(x, key, fill, sigma=None):
    removed = (
        torch.zeros(H, W, dtype=torch.bool)
        if key == KEEP_ALL
        else torch.ones(H, W, dtype=torch.bool)
        if key == REMOVE_ALL
        else _mask_of(key)
    )
    keep = (~removed).float()
    if fill == "zero":
        f = torch.zeros_like(x)
    elif fill == "black":
        f = (-torch.tensor(MEAN) / torch.tensor(STD)).view(-1, 1, 1).expand_as(x)
    else:
        f = gaussian_blur(x[None], sigma if sigma is not None else default_sigma(x.shape))[0]
    return (x * keep + f * (1 - keep)).reshape(-1).double().numpy()


@pytest.mark.parametrize("fill", ["zero", "black", "blur"])
def test_scores_equal_plain_forward_of_each_request(fill):
    x = _images()
    model = Wrapped(Echo())
    scorer = MaskedScorer(model, fill, masks=_mask_of, batch_size=3)
    scorer.load(x)
    ids = [i for i in range(5) for _ in KEYS] + [0, 3, 1]
    keys = [k for _ in range(5) for k in KEYS] + [KEEP_ALL, REMOVE_ALL, REMOVE_ALL]
    out = scorer.score(ids, keys)
    for row, (i, k) in zip(out, zip(ids, keys)):
        np.testing.assert_allclose(row, _reference(x[i], k, fill), atol=1e-6)


def test_same_pair_twice_costs_one_forward():
    x = _images()
    model = Wrapped(Echo())
    scorer = MaskedScorer(model, "zero", masks=_mask_of, batch_size=4)
    scorer.load(x)
    ids, keys = [0, 1, 0, 1, 2], [KEYS[0], KEYS[0], KEYS[0], KEYS[1], KEYS[0]]
    first = scorer.score(ids, keys)
    assert model.rows == scorer.n_forwards == 4  # (0, k0) asked twice: one forward
    assert model.calls == scorer.n_batches == 1 and dict(scorer.batches_by_image) == {0: 1, 1: 1, 2: 1}
    again = scorer.score([2, 0], [KEYS[0], KEYS[0]])  # both answered from the cache
    assert model.rows == 4
    np.testing.assert_array_equal(again[1], first[0])
    scorer.score([3], [KEYS[0]])
    assert model.rows == 5 and scorer.forwards_by_image[3] == 1
    scorer.forget([0])
    scorer.score([0], [KEYS[0]])
    assert model.rows == 6


@pytest.mark.parametrize("fill, expected", [("zero", 1), ("black", 1), ("blur", 4)])
def test_fully_filled_image_is_shared_only_for_constant_fills(fill, expected):
    x = _images(4)
    model = Wrapped(Echo())
    scorer = MaskedScorer(model, fill, masks=_mask_of)
    scorer.load(x)
    out = scorer.score(range(4), [REMOVE_ALL] * 4)
    assert model.rows == expected
    for i in range(4):
        np.testing.assert_allclose(out[i], _reference(x[i], REMOVE_ALL, fill), atol=1e-6)


def test_results_do_not_depend_on_batching_or_request_order():
    x = _images(6)
    net = nn.Sequential(nn.Conv2d(C, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    torch.manual_seed(0)
    ids = [i for i in range(6) for _ in KEYS]
    keys = [k for _ in range(6) for k in KEYS]
    a = MaskedScorer(Wrapped(net), "black", masks=_mask_of, batch_size=1)
    a.load(x)
    b = MaskedScorer(Wrapped(net), "black", masks=_mask_of, batch_size=7)
    b.load(x)
    ra = a.score(ids, keys)
    perm = np.random.default_rng(1).permutation(len(ids))
    rb = b.score([ids[i] for i in perm], [keys[i] for i in perm])
    np.testing.assert_allclose(rb, ra[perm], atol=1e-6)


def test_impute_fills_from_neighbours_and_noise_is_per_pair():
    x = _images(3)
    model = Wrapped(Echo())
    plain = MaskedScorer(model, "impute", masks=_mask_of, impute_noise=0.0)
    plain.load(x)
    out = plain.score([0, 1], [KEYS[1], KEYS[3]])
    for row, (i, k) in zip(out, [(0, KEYS[1]), (1, KEYS[3])]):
        removed = _mask_of(k)
        expected = impute_linear(x[i : i + 1], removed, noise=0.0)[0]
        np.testing.assert_allclose(row, expected.reshape(-1).numpy(), atol=1e-6)
        kept = (~removed).expand(C, H, W).reshape(-1).numpy()
        np.testing.assert_array_equal(row[kept], x[i].reshape(-1).double().numpy()[kept])  # kept pixels untouched
    # with noise: the same pair gives the same draw whatever the batch; different pairs differ
    noisy = [MaskedScorer(Wrapped(Echo()), "impute", masks=_mask_of, batch_size=b, seed=4) for b in (1, 5)]
    for s in noisy:
        s.load(x)
    ids, keys = [0, 1, 2, 0], [KEYS[1], KEYS[1], KEYS[1], KEYS[0]]
    r1, r5 = noisy[0].score(ids, keys), noisy[1].score(ids, keys)
    np.testing.assert_allclose(r1, r5, atol=1e-6)
    removed = _mask_of(KEYS[1]).expand(C, H, W).reshape(-1).numpy()
    base = plain.score([0], [KEYS[1]])[0]
    noise = r1[0] - base
    assert 0.002 < noise[removed].std() < 0.03 and np.all(noise[~removed] == 0)
    assert not np.allclose(r1[0][removed] - base[removed], r1[1][removed] - plain.score([1], [KEYS[1]])[0][removed])


def test_cancel_between_batches_keeps_finished_pairs():
    x = _images(4)
    stop = threading.Event()
    model = Wrapped(Echo())
    seen = []

    def on_batch(n):
        seen.append(n)
        stop.set()

    scorer = MaskedScorer(model, "zero", masks=_mask_of, batch_size=2, control=RunControl(cancel=stop))
    scorer.load(x)
    ids, keys = [0, 1, 2, 3], [KEYS[0]] * 4
    with pytest.raises(Cancelled):
        scorer.score(ids, keys, on_batch=on_batch)
    assert seen == [2] and model.rows == 2 and len(scorer.missing(ids, keys)) == 2
    stop.clear()
    scorer.control = RunControl()
    scorer.score(ids, keys, on_batch=seen.append)
    assert model.rows == 4 and seen == [2, 2]


def test_patch_set_keys_and_probability_outputs():
    """SAG-style keys: a frozenset of kept patches; probability=True applies the model's activation."""
    x = _images(2)
    patches = {0: (0, 5, 0, 7), 1: (0, 5, 7, 14), 2: (5, 10, 0, 7), 3: (5, 10, 7, 14)}

    def removed(key, device):
        keep = torch.zeros(H, W, dtype=torch.bool)
        for p in key:
            keep |= _mask_of(patches[p])
        return ~keep

    model = Wrapped(Echo())
    scorer = MaskedScorer(model, "zero", masks=removed, probability=True)
    scorer.load(x, ids=["a", "b"])
    out = scorer.score(["a", "b", "a"], [frozenset({0, 3}), frozenset({3, 0}), frozenset({3, 0})])
    assert model.rows == 2
    keep = (~removed(frozenset({0, 3}), None)).float()
    np.testing.assert_allclose(out[0], torch.sigmoid(x[0] * keep).reshape(-1).numpy(), atol=1e-6)


def test_bad_requests_fail_clearly():
    scorer = MaskedScorer(Wrapped(Echo()), "zero", masks=_mask_of)
    with pytest.raises(ValueError, match="unknown fill"):
        MaskedScorer(Wrapped(Echo()), "grey")
    scorer.load(_images(2))
    with pytest.raises(ValueError, match="not loaded"):
        scorer.score([5], [KEYS[0]])
    with pytest.raises(ValueError, match="one key per image"):
        scorer.score([0, 1], [KEYS[0]])
