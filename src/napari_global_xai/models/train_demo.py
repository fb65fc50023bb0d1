"""Train the shipped demo model on planted-truth synthetic images.

Run ``global-xai train-demo --out sample_data`` (about 12 minutes on 2 CPU cores). The
recipe follows the published UWF model where it matters here: red and green channels only, right eyes mirrored to
left-eye orientation, per-channel normalisation with training-set statistics, sigmoid multi-label head with
``BCEWithLogitsLoss``. Labels are learned in stages (disc first, arcades last), so do not cut the epochs short.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.synthetic import HEIGHT, LABELS, UNSEEN_IF_POSITIVE, WIDTH, generate_stack
from .architectures import DemoNet
from .card import ModelCard

__all__ = ["generate_harmonised", "train_demo_model", "evaluate_auroc"]


def _chunk(args):
    seed, split, start, n, unseen_share = args
    s = generate_stack(n, seed=seed, split=split, start=start, unseen_share=unseen_share)
    images = s.images[..., :2].copy()
    right = s.laterality == "R"
    images[right] = images[right, :, ::-1]
    return images, s.labels


def generate_harmonised(
    n: int, seed: int, split: str, workers: int = 2, chunk: int = 100, unseen_share: float | None = None
):
    """Generate ``n`` images as red+green uint8 ``(n, H, W, 2)`` in left-eye orientation, with their labels."""
    jobs = [(seed, split, start, min(chunk, n - start), unseen_share) for start in range(0, n, chunk)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_chunk, jobs))
    else:
        parts = [_chunk(j) for j in jobs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _to_input(images_u8: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float().div_(255.0)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def evaluate_auroc(model: nn.Module, images, labels, mean, std, batch: int = 32) -> list[float]:
    """Per-label AUROC of ``model`` on harmonised uint8 images."""
    from ..metrics import auroc

    model.eval()
    scores = torch.cat([model(_to_input(images[i : i + batch], mean, std)) for i in range(0, len(images), batch)])
    return [float(a) for a in auroc(np.asarray(labels), scores.numpy())]


def train_demo_model(
    out_dir: str | Path,
    n_train: int = 3000,
    epochs: int = 11,
    batch: int = 16,
    max_lr: float = 3e-3,
    seed: int = 0,
    n_heldout: int = 300,
    threads: int | None = None,
    unseen_share: float | None = None,
    init: str | Path | None = None,
    log=print,
) -> ModelCard:
    """Train :class:`DemoNet` and write ``demo_net.pt`` (state dict) and ``demo_net.card.json`` to ``out_dir``.

    Parameters
    ----------
    n_train, epochs, batch, max_lr
        Training set size (``train`` split), epochs, batch size and one-cycle peak learning rate.
    seed : int
        Data seed (the held-out set uses ``eval`` split images of ``seed + 1``) and torch seed.
    n_heldout : int
        Fresh ``eval``-split images for the AUROC written into the card.
    unseen_share : float, optional
        Share of ``peripheral_lesion`` training positives without a visible lesion
        (default :data:`~napari_global_xai.data.synthetic.UNSEEN_IF_POSITIVE`).
    init : path, optional
        Card of a demo model whose weights and normalisation start the training (fine-tuning); default: random
        initialisation and statistics of the generated training set.

    Returns
    -------
    ModelCard
    """
    out_dir = Path(out_dir)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    images, labels = generate_harmonised(n_train, seed, "train", unseen_share=unseen_share)
    log(f"generated {n_train} training images in {time.perf_counter() - t0:.0f}s")
    model = DemoNet(in_channels=2, n_labels=len(LABELS))
    if init is not None:
        start = ModelCard.from_json(init)
        model.load_state_dict(torch.load(start.weights_path(), map_location="cpu", weights_only=True))
        mean = torch.tensor(start.mean, dtype=torch.float32).view(1, 2, 1, 1)
        std = torch.tensor(start.std, dtype=torch.float32).view(1, 2, 1, 1)
    else:
        mean = torch.tensor(images.reshape(-1, 2).mean(0) / 255.0, dtype=torch.float32).view(1, 2, 1, 1)
        std = torch.tensor(images.reshape(-1, 2).std(0) / 255.0, dtype=torch.float32).view(1, 2, 1, 1)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=1e-4)
    steps_per_epoch = int(np.ceil(n_train / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=epochs * steps_per_epoch)
    loss_fn = nn.BCEWithLogitsLoss()
    y_all = torch.from_numpy(labels).float()
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_train, generator=gen).numpy()
        total = 0.0
        for i in range(0, n_train, batch):
            idx = np.sort(order[i : i + batch])
            x = _to_input(images[idx], mean, std)
            loss = loss_fn(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / n_train:.4f} ({time.perf_counter() - t0:.0f}s)")
    train_seconds = time.perf_counter() - t0

    held_images, held_labels = generate_harmonised(n_heldout, seed + 1, "eval")
    aurocs = evaluate_auroc(model, held_images, held_labels, mean, std)
    log("held-out AUROC: " + ", ".join(f"{n} {a:.4f}" for n, a in zip(LABELS, aurocs)))

    out_dir.mkdir(parents=True, exist_ok=True)
    from ..io_utils import atomic_path

    with atomic_path(out_dir / "demo_net.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    card = ModelCard(
        name="demo_net",
        labels=list(LABELS),
        weights="demo_net.pt",
        format="state_dict",
        activation="sigmoid",
        architecture="demo_net",
        architecture_kwargs={"in_channels": 2, "n_labels": len(LABELS)},
        input_channels=[0, 1],
        input_size=[HEIGHT, WIDTH],
        pixel_scale=255.0,
        mean=[round(float(v), 6) for v in mean.flatten()],
        std=[round(float(v), 6) for v in std.flatten()],
        cam_layer="stage3",
        harmonise_laterality=True,
        metrics={
            "heldout_auroc": {n: round(a, 5) for n, a in zip(LABELS, aurocs)},
            "heldout": f"{n_heldout} fresh 'eval'-split images, seed {seed + 1}",
        },
        provenance={
            "command": " ".join(
                [
                    f"global-xai train-demo --out {out_dir} --n-train {n_train} --epochs {epochs} --seed {seed}",
                    f"--max-lr {max_lr}",
                ]
                + ([f"--unseen-share {unseen_share}"] if unseen_share is not None else [])
                + ([f"--init {init}"] if init is not None else [])
            ),
            "seed": seed,
            "n_train": n_train,
            "epochs": epochs,
            "batch": batch,
            "max_lr": max_lr,
            "unseen_share": UNSEEN_IF_POSITIVE if unseen_share is None else unseen_share,
            "train_seconds": round(train_seconds, 1),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            **({"initialised_from": {"card": str(init), "provenance": start.provenance}} if init is not None else {}),
        },
    )
    card.to_json(out_dir / "demo_net.card.json")
    return card
