"""Scale: explain over a large generated stack, in-process against a Dask LocalCluster; GPU batch sizing.

Run:  .venv/bin/python benchmarks/bench_scale.py [--sizes 1000 3000 10000] [--modes embedded local:1 local:2]
                                                  [--scratch /tmp/global_xai_scale] [--method saliency]
      .venv/bin/python benchmarks/bench_scale.py --gpu      (CUDA only: IG-32 on the ResNet34-shaped model)

Prints, for each stack size N and each mode, measured in this run:
* wall time of ``run_explain`` (Zarr store output, the default) and images/s;
* peak RSS of the process that ran it (``ru_maxrss``, in a fresh process per measurement, so the figures do not
  carry over), its peak *anonymous* RSS (sampled ``RssAnon``: ``ru_maxrss`` also counts the pages of the memory-mapped
  stack that were read, which the kernel may drop) and, for a cluster, the largest worker peak; the anonymous
  memory must not grow with N;
* Dask overhead at equal workers: ``local:1`` against the in-process run, in wall time and in CPU time (the client
  process, with the scheduler thread, plus the workers; nanny processes not counted): on a shared machine the wall
  time follows the load, the CPU time much less;
* the store's bytes per image against the float32 TIFF's (``L * H * W * 4``).

The stack is a multi-page TIFF of ``max(sizes)`` generated 64 x 64 RGB images written once to ``--scratch``
(outside the repository); each N explains its first N images. The model is a small CNN saved as TorchScript with
its own card. Torch runs one thread per process (``torch.set_num_threads(1)``) so that a shared machine gives
comparable figures.

``--gpu`` (needs CUDA): the engine's batch size chosen from free memory (bytes per image measured once), images/s of
IG with 32 steps on the ResNet34-shaped model at 384 x 512, fp32 against bf16 autocast, and the Pearson
correlation of the bf16 image-wise maps with the fp32 ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 64
LABELS = ["spot", "stripe"]


def _write_inputs(scratch: Path, n: int) -> tuple[Path, Path]:
    """The stack TIFF (n images) and the model card, written once."""
    import tifffile
    import torch
    from torch import nn

    scratch.mkdir(parents=True, exist_ok=True)
    stack, card = scratch / f"stack_{n}.tif", scratch / "net.json"
    if not card.exists():
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, len(LABELS)),
        )
        torch.jit.script(net.eval()).save(str(scratch / "net.pt"))
        card.write_text(
            json.dumps({"weights": "net.pt", "labels": LABELS, "mean": [0.5] * 3, "std": [0.25] * 3, "cam_layer": "4"})
        )
    if not stack.exists():
        rng = np.random.default_rng(0)

        def pages():
            for _ in range(n):
                image = rng.integers(0, 120, size=(SIZE, SIZE, 3), dtype=np.uint8)
                y, x = rng.integers(4, SIZE - 12, size=2)
                image[y : y + 8, x : x + 8] = 250
                yield image

        tmp = stack.with_suffix(".partial.tif")
        tifffile.imwrite(tmp, pages(), shape=(n, SIZE, SIZE, 3), dtype=np.uint8, photometric="rgb")
        os.replace(tmp, stack)
    return stack, card


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _worker_cpu_seconds(client) -> dict:
    """CPU seconds of each worker process so far (empty without a cluster)."""
    if client is None:
        return {}
    return client.run(lambda: sum(__import__("resource").getrusage(0)[:2]))


def _status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` memory field in kB (Linux); None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class _AnonPeak:
    """Peak anonymous RSS (``RssAnon``: the process's own heap, not file pages it maps), sampled every 20 ms.

    ``ru_maxrss`` also counts the pages of memory-mapped files that were read (the multi-page TIFF stack is read
    through a memmap), which the kernel can drop at any time; the anonymous part is what must stay flat with N.
    """

    def __enter__(self):
        import threading

        self.peak, self._stop = _status_kb("RssAnon") or 0, threading.Event()

        def sample():
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, _status_kb("RssAnon") or 0)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_kb("RssAnon") or 0)


def _warm_worker(spec) -> None:
    """On a worker: import the explain engine and load the model (cached for the run's tasks)."""
    import napari_global_xai.saliency.engine  # noqa: F401
    from napari_global_xai.scale.specs import worker_model

    worker_model(spec)


def measure_one(
    stack_path: Path, card: Path, n: int, mode: str, method: str, out: Path, chunk_size: int | None = None
) -> dict:
    """One explain run in this process (called in a fresh subprocess by :func:`main`)."""
    import shutil

    import torch

    torch.set_num_threads(1)
    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.control import RunControl
    from napari_global_xai.data import read_stack
    from napari_global_xai.explain.pipeline import run_explain
    from napari_global_xai.models import load_model
    from napari_global_xai.scale import connect
    from napari_global_xai.scale.specs import ModelSpec

    model = load_model(card, device="cpu")
    stack = read_stack(stack_path, labels=False).subset(range(n))
    config = ExplainConfig(
        method=method, subset="all", compute="all", **({"chunk_size": chunk_size} if chunk_size else {})
    )
    shutil.rmtree(out, ignore_errors=True)
    with connect(None if mode == "embedded" else mode) as client:
        executor = None
        if client is not None:
            from napari_global_xai.scale.executor import DaskExecutor

            executor = DaskExecutor(client, device="cpu", torch_threads=1)
            # as in-process, where torch, the package and the model are loaded before the clock starts: the
            # workers import and load them once before it too (one-time start-up, not per-chunk overhead)
            spec = ModelSpec.from_model(model, device="cpu", torch_threads=1)
            client.run(_warm_worker, spec)
        seen = []
        cpu0, workers0 = _cpu_seconds(), _worker_cpu_seconds(client)
        t0 = time.perf_counter()
        with _AnonPeak() as anon:
            result = run_explain(
                stack,
                model,
                config,
                out_dir=out,
                executor=executor,
                control=RunControl(progress=lambda done, total, stage: seen.append((time.perf_counter() - t0, done))),
            )
        wall = time.perf_counter() - t0
        cpu_client = _cpu_seconds() - cpu0
        cpu = cpu_client + sum(_worker_cpu_seconds(client).values()) - sum(workers0.values())
        workers = client.run(lambda: __import__("resource").getrusage(0).ru_maxrss) if client else {}
    store = out / "image_maps.zarr"
    first = next((t, done) for t, done in seen if done > 0)  # the first chunk back: start-up included
    last = max(seen)
    return {
        "n": n,
        "mode": mode,
        "method": method,
        "chunk_size": config.chunk_size,
        "wall_s": wall,
        "images_per_s": n / wall,
        "first_chunk_s": first[0],
        "steady_images_per_s": (last[1] - first[1]) / max(1e-9, last[0] - first[0]),
        "cpu_s": cpu,
        "cpu_client_s": cpu_client,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_anon_rss_mb": anon.peak / 1024,
        "file_rss_mb_at_end": (_status_kb("RssFile") or 0) / 1024,
        "worker_peak_rss_mb": max(workers.values()) / 1024 if workers else None,
        "maps": int(result.n_computed),
        "store_bytes_per_image": _folder_bytes(store) / n if store.exists() else None,
        "tiff_bytes_per_image": len(LABELS) * SIZE * SIZE * 4,
    }


def gpu_figures(n_images: int = 16, steps: int = 32, device: str = "cuda") -> None:
    """IG-32 on the ResNet34-shaped model at 384 x 512: batch size chosen, images/s fp32 vs bf16, map agreement.

    ``device="cpu"`` is a proxy for the numerical effect only: the product's ``autocast`` is CUDA-only, so here the
    engine's autocast context is replaced by torch's CPU bf16 autocast (same bf16 format, different kernels); its
    speed says nothing about a GPU.
    """
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print("--gpu: CUDA is not available here; GPU figures not measured")
        return
    sys.path.insert(0, str(HERE))
    from _models import real_size_model
    from _timing import timed

    from napari_global_xai.config import ExplainConfig
    from napari_global_xai.saliency.engine import ImageMapEngine

    model = real_size_model(device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(n_images, 384, 512, 3), dtype=np.uint8)
    pairs = np.zeros((n_images, len(model.labels)), bool)
    pairs[:, 0] = True
    maps = {}
    for autocast in (None, "bf16"):
        engine = ImageMapEngine(
            model,
            ExplainConfig(method="ig", params={"n_steps": steps}, autocast=autocast),
            list(range(len(model.labels))),
        )
        if device == "cpu" and autocast:  # the CPU proxy (see the docstring)
            engine._autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
        engine.compute(images[:1], pairs[:1])  # warm-up (after the one memory measurement)
        seconds = timed(lambda e=engine, a=autocast: maps.__setitem__(a, e.compute(images, pairs)), device)
        cost = "not measurable" if engine.bytes_per_image is None else f"{engine.bytes_per_image / 2**20:.1f} MiB"
        print(
            f"IG-{steps} {autocast or 'fp32'}: {cost} per image pass, {engine.images_per_pass} images per pass, "
            f"{engine.maps_per_call} maps per call, {n_images / seconds:.2f} images/s",
            flush=True,
        )
    a, b = maps[None][:, 0].reshape(n_images, -1), maps["bf16"][:, 0].reshape(n_images, -1)
    corr = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)]
    print(f"bf16 vs fp32 image-wise maps: Pearson r median {np.median(corr):.4f}, min {np.min(corr):.4f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 3000, 10000])
    parser.add_argument("--modes", nargs="+", default=["embedded", "local:1", "local:2"])
    parser.add_argument("--method", default="saliency")
    parser.add_argument("--chunk-size", type=int, default=None, help="images per chunk (default ExplainConfig's)")
    parser.add_argument("--scratch", default="/tmp/global_xai_scale")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument(
        "--cpu-bf16-proxy",
        type=int,
        nargs=2,
        metavar=("IMAGES", "STEPS"),
        help="the bf16-vs-fp32 map agreement measured with torch's CPU autocast (no GPU needed)",
    )
    parser.add_argument("--one", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gpu:
        gpu_figures()
        return
    if args.cpu_bf16_proxy:
        gpu_figures(*args.cpu_bf16_proxy, device="cpu")
        return
    scratch = Path(args.scratch)
    stack, card = _write_inputs(scratch, max(args.sizes))
    if args.one:
        n, mode = int(args.one[0]), args.one[1]
        row = json.dumps(measure_one(stack, card, n, mode, args.method, scratch / f"out_{n}_{mode}", args.chunk_size))
        with open(scratch / "rows.jsonl", "a") as log:  # every figure, for RESULTS.md
            log.write(row + "\n")
        print(row)
        return
    rows = []
    for n in args.sizes:
        for mode in args.modes:
            command = [
                sys.executable,
                __file__,
                "--one",
                str(n),
                mode,
                "--scratch",
                str(scratch),
                "--method",
                args.method,
                *(["--chunk-size", str(args.chunk_size)] if args.chunk_size else []),
                "--sizes",
                *map(str, args.sizes),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"measurement {n} {mode} failed")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            worker = f"{row['worker_peak_rss_mb']:.0f}" if row["worker_peak_rss_mb"] else "-"
            print(
                f"N={n:>6} {mode:<9} {row['wall_s']:8.1f} s {row['images_per_s']:7.1f} img/s  "
                f"(steady {row['steady_images_per_s']:6.1f}, first chunk at {row['first_chunk_s']:5.1f} s) "
                f"CPU {row['cpu_s']:6.1f} s  "
                f"peak RSS {row['peak_rss_mb']:6.0f} MB (anonymous {row['peak_anon_rss_mb']:5.0f} MB, mapped files "
                f"{row['file_rss_mb_at_end']:4.0f} MB at the end; workers {worker} MB)  store "
                f"{row['store_bytes_per_image']:.0f} B/image vs TIFF {row['tiff_bytes_per_image']} B",
                flush=True,
            )
    by = {(r["n"], r["mode"]): r for r in rows}
    for n in args.sizes:
        if (n, "embedded") in by and (n, "local:1") in by:
            wall = by[(n, "local:1")]["wall_s"] / by[(n, "embedded")]["wall_s"] - 1
            cpu = by[(n, "local:1")]["cpu_s"] / by[(n, "embedded")]["cpu_s"] - 1
            print(f"N={n}: Dask overhead at one worker: wall {wall * 100:+.1f} %, CPU time {cpu * 100:+.1f} %")


if __name__ == "__main__":
    main()
