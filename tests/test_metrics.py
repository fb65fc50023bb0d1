"""metrics: one AUROC (= sklearn's), the activation read from the model, non-saturating AUROC inputs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from napari_global_xai.metrics import activate, activation_of, auroc, ranking_scores


def test_activation_comes_from_the_models_card():
    assert activation_of(SimpleNamespace(card=SimpleNamespace(activation="softmax"))) == "softmax"
    assert activation_of(SimpleNamespace(card=SimpleNamespace(activation="sigmoid"))) == "sigmoid"
    assert activation_of(object()) == "sigmoid"  # no card: a multi-label logit model


def test_activate_and_ranking_scores_match_the_textbook_formulas():
    z = np.random.default_rng(0).normal(scale=5, size=(4, 6, 3))
    z[0, 0] = [2.0, 2.0, -1.0]  # a tie for the largest output
    np.testing.assert_allclose(activate(z, "sigmoid"), 1 / (1 + np.exp(-z)), atol=1e-15)
    soft = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(activate(z, "softmax"), soft, atol=1e-15)
    np.testing.assert_allclose(ranking_scores(z, "softmax"), np.log(soft), atol=1e-12)
    np.testing.assert_array_equal(ranking_scores(z, "sigmoid"), z)


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_ranking_scores_keep_the_probability_order_without_saturating(activation):
    z = np.array([[30.0, 0.0, -1.0], [40.0, 0.0, -1.0], [50.0, 0.0, -1.0], [-2.0, 0.0, 1.0]])
    truth = np.array([[0, 1, 0], [1, 0, 1], [1, 1, 0], [0, 0, 1]])
    scores = ranking_scores(z, activation)
    probs32 = activate(z, activation).astype(np.float32)
    assert probs32[0, 0] == probs32[1, 0] == 1.0  # float32 probabilities tie ...
    assert scores[0, 0] < scores[1, 0] < scores[2, 0]  # ... the ranking scores do not
    for j in range(3):
        assert auroc(truth, scores)[j] == pytest.approx(roc_auc_score(truth[:, j], activate(z, activation)[:, j]))


def test_one_auroc_for_the_demo_models_held_out_check():
    from napari_global_xai.models.train_demo import evaluate_auroc

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30, 12, 12, 2)).astype(np.uint8)
    labels = (rng.random((30, 3)) < 0.5).astype(np.uint8)
    mean, std = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1), torch.tensor([0.2, 0.2]).view(1, 2, 1, 1)
    got = evaluate_auroc(net, images, labels, mean, std, batch=7)
    with torch.no_grad():
        x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
        scores = net(x).numpy()
    np.testing.assert_allclose(got, [roc_auc_score(labels[:, k], scores[:, k]) for k in range(3)], atol=1e-12)
