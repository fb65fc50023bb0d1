"""The XNN explanation network and its training: :class:`ExplanationNet` (features → concepts → rebuilt logits and
features) and :func:`train_explanation_net`, with the settings of
:class:`~napari_global_xai.analysis_config.ConceptConfig`.

The loss terms and their defaults are documented choices; see the Notes of :mod:`napari_global_xai.concepts`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..analysis_config import ConceptConfig
from ..control import RunControl

__all__ = ["DEAD_TOLERANCE", "ExplanationNet", "dead_units", "prune_dead", "train_explanation_net"]


class ExplanationNet(torch.nn.Module):
    """``f → z = relu(E standardise(f))`` (concepts) → ``V z`` (logits) and ``D z`` (features)."""

    def __init__(self, n_features: int, k: int, n_outputs: int, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())
        self.encoder = torch.nn.Linear(n_features, k)
        self.predictor = torch.nn.Linear(k, n_outputs)
        self.decoder = torch.nn.Linear(k, n_features)

    def standardise(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.mean) / self.std

    def concepts(self, f: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.encoder(self.standardise(f)))

    def forward(self, f: torch.Tensor):
        z = self.concepts(f)
        return z, self.predictor(z), self.decoder(z)


# ------------------------------------------------------------------------------------------------- training


def _pull_away(e: torch.Tensor) -> torch.Tensor:
    k = e.shape[0]
    if k < 2:
        return e.new_zeros(())
    u = F.normalize(e, dim=1)
    cos2 = (u @ u.T).pow(2)
    return (cos2.sum() - cos2.diagonal().sum()) / (k * (k - 1))


#: A concept is dead when its largest activation over the images is at most this share of the largest activation.
DEAD_TOLERANCE = 1e-6


def dead_units(z: torch.Tensor) -> torch.Tensor:
    """Boolean ``(K,)``: concepts no image activates (``max_i z_ik ≤ DEAD_TOLERANCE · max z``)."""
    top = z.amax(dim=0)
    return top <= DEAD_TOLERANCE * float(z.max().clamp_min(1e-30))


def prune_dead(net: ExplanationNet, features: torch.Tensor) -> int:
    """Drop the concepts no image of ``features`` activates (in place); their number.

    A dead concept adds nothing to any rebuilt logit or feature on these images, so the outputs stay the same.
    """
    with torch.no_grad():
        keep = ~dead_units(net.concepts(features))
    n_dead = int((~keep).sum())
    if n_dead == 0 or not keep.any():  # all dead: nothing sensible to keep, the caller reports it
        return 0
    enc, pred, dec = net.encoder, net.predictor, net.decoder
    net.encoder = torch.nn.Linear(enc.in_features, int(keep.sum()))
    net.predictor = torch.nn.Linear(int(keep.sum()), pred.out_features)
    net.decoder = torch.nn.Linear(int(keep.sum()), dec.out_features)
    with torch.no_grad():
        net.encoder.weight.copy_(enc.weight[keep])
        net.encoder.bias.copy_(enc.bias[keep])
        net.predictor.weight.copy_(pred.weight[:, keep])
        net.predictor.bias.copy_(pred.bias)
        net.decoder.weight.copy_(dec.weight[:, keep])
        net.decoder.bias.copy_(dec.bias)
    return n_dead


#: Loss terms besides faithfulness, each weighted by the ConceptConfig field of the same name.
_PENALTIES = ("sparsity", "pull_away", "reconstruction", "predictor_sparsity", "encoder_decay")


def train_explanation_net(
    features: np.ndarray,
    logits: np.ndarray,
    config: ConceptConfig | None = None,
    *,
    control: RunControl | None = None,
):
    """Train the explanation network on ``(features, model logits)``.

    ``control`` reports progress (stage ``"train"``, in steps) and its cancel is checked every ``steps // 50``
    steps.

    Returns
    -------
    net : ExplanationNet
    losses : dict
        Final ``faithfulness``, ``sparsity``, ``pull_away``, ``reconstruction``, ``predictor_sparsity``,
        ``encoder_decay`` and ``total`` losses.
    cancelled : bool
        True when a cancel stopped training early (the network is the one reached so far).
    units : dict
        ``requested`` (K), ``dead`` (concepts no image activates after training), ``pruned`` (of those, dropped
        from the network: all of them when ``config.prune_dead``) and ``kept`` (concepts the network has).

    Notes
    -----
    The sparsity and predictor penalties let a concept die: its ReLU is off on every image, its map is zero and no
    gradient reaches it again. On the shipped sample 3 of 8 die (seed 0; 2 for seed 1): the objective keeps about one
    concept per label. Re-initialising dead concepts towards the worst-explained images (least-squares restart of
    their prediction and decoder weights, as sparse autoencoders "resample" dead units) was measured and not kept:
    after 800 steps the restarted concepts were weak (largest activation < 1 against 5-11, no label weight) and by
    2,400 steps they had died again, so they were noise in the outputs. A dead concept is dropped instead
    (``config.prune_dead``, :func:`prune_dead`): every concept returned has a map, and ``units`` says how many went.
    """
    config = config or ConceptConfig()
    control = control or RunControl()
    f = torch.as_tensor(features, dtype=torch.float32)
    s = torch.as_tensor(logits, dtype=torch.float32)
    if len(f) < 2:
        raise ValueError(f"at least 2 images are needed to train concepts, got {len(f)}")
    mean = f.mean(dim=0)
    if config.feature_scale == "feature":
        std = f.std(dim=0).clamp_min(1e-6)
    else:  # one scale for the whole layer: the pooled features keep the layer's units relative to each other
        std = (f - mean).pow(2).mean().sqrt().clamp_min(1e-6).expand_as(mean).clone()
    s_var = s.var(dim=0).clamp_min(1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.seed))
        net = ExplanationNet(f.shape[1], int(config.k), s.shape[1], mean, std)
    opt = torch.optim.Adam(net.parameters(), lr=float(config.lr))
    target = net.standardise(f)
    cancelled = False
    terms = {}
    steps = int(config.steps)
    report = max(1, steps // 50)
    for step in range(steps):
        if step % report == 0 and control.cancelled():
            cancelled = True
            break
        z, s_hat, f_hat = net(f)
        terms = {
            "faithfulness": ((s_hat - s).pow(2) / s_var).mean(),
            "sparsity": z.abs().mean(),
            "pull_away": _pull_away(net.encoder.weight),
            "reconstruction": (f_hat - target).pow(2).mean(),
            "predictor_sparsity": net.predictor.weight.abs().sum(dim=1).mean(),
            "encoder_decay": net.encoder.weight.pow(2).sum(dim=1).mean(),
        }
        total = terms["faithfulness"] + sum(getattr(config, name) * terms[name] for name in _PENALTIES)
        opt.zero_grad()
        total.backward()
        opt.step()
        terms["total"] = total
        if (step + 1) % report == 0:
            control.report(step + 1, steps, "train")
    with torch.no_grad():
        n_dead = int(dead_units(net.concepts(f)).sum())
    pruned = prune_dead(net, f) if config.prune_dead else 0
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    units = {"requested": int(config.k), "dead": n_dead, "pruned": pruned, "kept": net.encoder.out_features}
    return net, {k: float(v.detach()) for k, v in terms.items()}, cancelled, units
