"""`unlearnkit import`: a run directory from a checkpoint trained elsewhere (a thin wrapper over unlearnkit.importer)."""

from __future__ import annotations

import argparse

from unlearnkit.cli.registry import command, with_arguments
from unlearnkit.tables import console, print_mapping


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="checkpoint: .safetensors, or .pt/.pth (read with weights_only=True)")
    p.add_argument("--arch", required=True,
                   help="architecture (see the model registry), e.g. resnet18, torchvision:resnet50, timm:vit_tiny_patch16_224")
    p.add_argument("--width", type=int, help="the architecture's width option (default: read from the checkpoint)")
    p.add_argument("--data", required=True, help="the dataset it was trained on (same sources as `unlearnkit train --data`)")
    p.add_argument("--labels", help="Kaggle layout: the id,label CSV (default: found beside the images)")
    p.add_argument("--members", required=True, metavar="all|ids:FILE|split:SEED",
                   help="the training samples the model saw: all, the ids in FILE, or the seeded split `train` makes")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--mean", help="per-channel input mean in [0, 1] units (as in transforms.Normalize), e.g. 0.49,0.48,0.45")
    p.add_argument("--std", help="per-channel input std, e.g. 0.25,0.24,0.26")
    p.add_argument("--normalize", choices=["fit"], help="fit: compute mean/std on the members (as `unlearnkit train` does)")
    p.add_argument("--recipe", metavar="PRESET", help="the preset it was trained with (enables exact retraining)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="declare the training recipe (or change the preset's): train.*, data.val_fraction/test_fraction, "
                        "runtime.* (e.g. runtime.precision=bf16), or model.flip_tta=true; e.g. --set train.epochs=10 (repeatable)")


@command("import", "Make a run directory from a checkpoint trained elsewhere, so forget, audit and compare work on it.")
@with_arguments(_import_args)
def import_cmd(args: argparse.Namespace) -> int:
    from unlearnkit.errors import UnlearnkitError  # noqa: PLC0415
    from unlearnkit.importer import import_run  # noqa: PLC0415

    overrides = {}
    for item in args.overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise UnlearnkitError(f"--set {item!r} is not KEY=VALUE; write e.g. --set train.epochs=10")
        overrides[key.strip()] = value.strip()
    result = import_run(args.weights, args.arch, args.data, args.members, args.out, labels_csv=args.labels,
                        width=args.width, mean=args.mean, std=args.std, normalize=args.normalize, recipe=args.recipe,
                        overrides=overrides)
    print_mapping(f"imported {args.weights} as {args.arch}", result.metrics)
    if result.non_members == 0:
        console.print("note: no non-members (every training sample is a member): `unlearnkit audit` will refuse; "
                      "import with --members ids:FILE or split:SEED to audit")
    console.print(f"run directory: {result.run_dir}")
    return 0
