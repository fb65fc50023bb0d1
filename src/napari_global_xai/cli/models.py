"""The commands that write a model card: ``global-xai train-demo`` (train the demo model, :mod:`..models.train_demo`)
and ``global-xai card`` (probe a model file, :mod:`..models.probe`)."""

from __future__ import annotations

from pathlib import Path

from ._common import _note
from ._options import add_debug, command


def add_parser(sub) -> None:
    from ..models.card import ACTIVATIONS

    p = command(sub, "train-demo", "train the demo model on generated planted-truth images")
    p.add_argument("--out", required=True, help="output folder (demo_net.pt and demo_net.card.json)")
    p.add_argument("--n-train", type=int, default=3000, help="generated training images (default 3000)")
    p.add_argument("--epochs", type=int, default=11, help="training epochs (default 11)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the training images and of torch (held-out images: SEED + 1)"
    )
    p.add_argument("--max-lr", type=float, default=3e-3, help="one-cycle peak learning rate")
    p.add_argument(
        "--unseen-share",
        type=float,
        default=None,
        help="share of peripheral_lesion training positives without a visible lesion (default 0.25)",
    )
    p.add_argument("--init", default=None, help="model card whose weights start the training (fine-tuning)")
    add_debug(p)
    p.set_defaults(func=run_train_demo)

    p = command(sub, "card", "probe a model file and write its model card (then fill in what it lists)")
    p.add_argument("model_file", help="TorchScript, torch.export .pt2, state dict .pt/.pth or .safetensors file")
    p.add_argument("--out", required=True, help="card to write (.json)")
    p.add_argument("--labels", default=None, help="labels CSV: its 0/1 columns name the outputs, in file order")
    p.add_argument(
        "--architecture",
        default=None,
        help="for a state dict: 'file.py:ClassName', 'package.module:factory', 'timm:name' or a registered name",
    )
    p.add_argument(
        "--architecture-kwargs",
        default=None,
        metavar="JSON",
        help='keyword arguments of the architecture, e.g. \'{"in_chans": 2, "num_classes": 8}\'',
    )
    p.add_argument("--channels", type=int, default=None, help="input channels (default: probed)")
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=None, help="input size (default: probed)")
    p.add_argument(
        "--activation",
        default=ACTIVATIONS[0],
        choices=ACTIVATIONS,
        help=f"output activation: sigmoid = multi-label, softmax = multi-class (default {ACTIVATIONS[0]})",
    )
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow loading a full pickled model (runs code from the file)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing card at --out (otherwise refused)")
    add_debug(p)
    p.set_defaults(func=run_card)


def run_train_demo(args) -> int:
    from ..models.train_demo import train_demo_model

    card = train_demo_model(
        args.out,
        n_train=args.n_train,
        epochs=args.epochs,
        seed=args.seed,
        max_lr=args.max_lr,
        unseen_share=args.unseen_share,
        init=args.init,
    )
    print(f"wrote {Path(args.out) / 'demo_net.card.json'}: held-out AUROC {card.metrics['heldout_auroc']}")
    return 0


def run_card(args) -> int:
    import json

    from ..models.probe import make_card

    kwargs = json.loads(args.architecture_kwargs) if args.architecture_kwargs else None
    card, todo = make_card(
        args.model_file,
        args.out,
        labels_csv=args.labels,
        architecture=args.architecture,
        architecture_kwargs=kwargs,
        channels=args.channels,
        size=tuple(args.size) if args.size else None,
        activation=args.activation,
        trust_pickle=args.trust_pickle,
        log=_note,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {Path(args.out).resolve()}: {card.format} model, {len(card.input_channels)} input channel(s), "
        f"{len(card.labels)} outputs, cam_layer {card.cam_layer!r}"
    )
    print("still to check or fill in:")
    for line in todo:
        print(f"  - {line}")
    return 0
