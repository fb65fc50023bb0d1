"""Planted-truth generator speed and the demo model's forward / forward+backward cost.

Run:  .venv/bin/python benchmarks/bench_model_and_data.py [--images 40] [--device auto]

Prints: generator ms per image (one process, and the projected time for 1,000 images on 2 processes), and the demo
net's forward and forward+backward (gradient to the input) ms per 384×512 image at batch 1, 4, 8 and 16, next to the
issue's budget (≤ 25 ms forward+backward on 2 CPU cores; a ResNet-18 takes about 265 ms there).
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import best_of


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    from napari_global_xai.data.synthetic import generate_stack
    from napari_global_xai.models import load_demo_model

    t = time.perf_counter()
    generate_stack(args.images, seed=0)
    per = (time.perf_counter() - t) / args.images
    print(
        f"generator: {per * 1000:.1f} ms/image on one core; 1,000 images ≈ {per * 1000:.0f} s on one process, "
        f"≈ {per * 500:.0f} s on two (generate_harmonised(workers=2))"
    )

    model = load_demo_model(args.device)
    n_params = sum(p.numel() for p in model.module.parameters())
    print(f"demo net: {n_params:,} parameters, device {model.device}, torch threads {torch.get_num_threads()}")
    x = torch.randn(16, 2, 384, 512, device=model.device).contiguous(memory_format=torch.channels_last)
    for b in (1, 4, 8, 16):
        xb = x[:b]

        def fwd(xb=xb):
            with torch.inference_mode():
                model.module(xb)

        def fwd_bwd(xb=xb):
            xi = xb.clone().requires_grad_(True)
            torch.autograd.grad(model.module(xi)[:, 0].sum(), xi)

        print(
            f"  batch {b:>2}: forward {best_of(fwd) / b * 1000:6.1f} ms/image, "
            f"forward+backward {best_of(fwd_bwd) / b * 1000:6.1f} ms/image (budget 25 ms)"
        )


if __name__ == "__main__":
    main()
