"""Command-line flags of ``main_finetune.py``: the MAE finetuning flag set, MAE's defaults.

Deviations from MAE's defaults, all documented in ``--help``:
``--data_path`` has no (site-specific) default; ``--nb_classes`` defaults to the
number of class folders in ``train/``; ``--log_dir`` defaults to ``--output_dir``;
``--blr`` / ``--weight_decay`` default to the MAE finetune values (1e-3 / 0.05)
or, with ``--linprobe``, the MAE linear-probe values (0.1 / 0.0).
"""
from __future__ import annotations

import argparse
import json

FINETUNE_DEFAULTS = {"blr": 1e-3, "weight_decay": 0.05}
LINPROBE_DEFAULTS = {"blr": 0.1, "weight_decay": 0.0}


def _json_dict(text: str) -> dict:
    """argparse type: a JSON object such as '{"embed_dim": 32, "depth": 2}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"depth\": 2}'")
    return value


def get_args_parser() -> argparse.ArgumentParser:
    """The parser for ``main_finetune.py`` (flag names and defaults of MAE's main_finetune)."""
    p = argparse.ArgumentParser(description="vlt image-classification finetuning / linear probing (MAE recipe)")

    g = p.add_argument_group("schedule")
    g.add_argument("--batch_size", type=int, default=64, help="per-process batch size (effective = batch_size x accum_iter x world_size)")
    g.add_argument("--epochs", type=int, default=50)
    g.add_argument("--accum_iter", type=int, default=1, help="gradient accumulation steps")

    g = p.add_argument_group("model")
    g.add_argument("--model", type=str, default="vit_large_patch16", metavar="MODEL",
                   help="vit_base_patch16 | vit_large_patch16 | vit_huge_patch14 (MAE names) or any timm model name")
    g.add_argument("--model_kwargs", type=_json_dict, default=None, metavar="JSON",
                   help="extra timm.create_model kwargs, e.g. '{\"embed_dim\": 32, \"depth\": 2, \"num_heads\": 2, \"patch_size\": 8}'")
    g.add_argument("--input_size", type=int, default=224, help="image size")
    g.add_argument("--drop_path", type=float, default=0.1, metavar="PCT", help="drop path rate")
    pool = g.add_mutually_exclusive_group()
    pool.add_argument("--global_pool", action="store_true", dest="global_pool",
                      help="average-pool patch tokens + fc_norm (default)")
    pool.add_argument("--cls_token", action="store_false", dest="global_pool",
                      help="classify from the class token after the final norm")
    p.set_defaults(global_pool=True)
    g.add_argument("--linprobe", action="store_true",
                   help="linear probing: frozen backbone, only a plain Linear head trains (SGD, momentum 0.9); "
                        "no mixup/cutmix/RandAugment/erasing/smoothing/drop_path/layer_decay")

    g = p.add_argument_group("optimiser")
    g.add_argument("--clip_grad", type=float, default=None, metavar="NORM", help="clip gradient norm (default: off)")
    g.add_argument("--weight_decay", type=float, default=None,
                   help="default 0.05 (finetune) / 0.0 (--linprobe)")
    g.add_argument("--lr", type=float, default=None, metavar="LR", help="absolute lr (default: blr x effective batch / 256)")
    g.add_argument("--blr", type=float, default=None, metavar="LR",
                   help="base lr, lr = blr x effective batch / 256; default 1e-3 (finetune) / 0.1 (--linprobe)")
    g.add_argument("--layer_decay", type=float, default=0.75, help="layer-wise lr decay (BEiT/ELECTRA)")
    g.add_argument("--min_lr", type=float, default=1e-6, metavar="LR", help="final lr of the cosine schedule")
    g.add_argument("--warmup_epochs", type=int, default=5, metavar="N", help="epochs of linear warmup")

    g = p.add_argument_group("augmentation")
    g.add_argument("--color_jitter", type=float, default=None, metavar="PCT", help="colour jitter (only without --aa)")
    g.add_argument("--aa", type=str, default="rand-m9-mstd0.5-inc1", metavar="NAME",
                   help="timm auto-augment policy; 'none' disables")
    g.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    g.add_argument("--reprob", type=float, default=0.25, metavar="PCT", help="random erasing probability")
    g.add_argument("--remode", type=str, default="pixel", help="random erasing mode")
    g.add_argument("--recount", type=int, default=1, help="random erasing count")
    g.add_argument("--resplit", action="store_true", default=False,
                   help="accepted for MAE compatibility; no effect (no augmentation splits are used)")
    g.add_argument("--mixup", type=float, default=0, help="mixup alpha (> 0 enables)")
    g.add_argument("--cutmix", type=float, default=0, help="cutmix alpha (> 0 enables)")
    g.add_argument("--cutmix_minmax", type=float, nargs=2, default=None, help="cutmix min/max ratio (overrides alpha)")
    g.add_argument("--mixup_prob", type=float, default=1.0, help="probability of mixup or cutmix per batch")
    g.add_argument("--mixup_switch_prob", type=float, default=0.5, help="probability of cutmix when both are on")
    g.add_argument("--mixup_mode", type=str, default="batch", choices=("batch", "pair", "elem"))

    g = p.add_argument_group("checkpoints")
    g.add_argument("--finetune", default="", help="initial weights: vlt Lightning .ckpt, MAE {'model': sd} or a timm state dict")
    g.add_argument("--resume", default="", help="checkpoint to resume from ('auto': OUTPUT_DIR/checkpoint-last.pth if present)")
    g.add_argument("--start_epoch", type=int, default=0, metavar="N")
    g.add_argument("--save_freq", type=int, default=20,
                   help="keep checkpoint-{epoch}.pth every N epochs (checkpoint-last.pth is written every epoch)")

    g = p.add_argument_group("data")
    g.add_argument("--data_path", type=str, default=None, help="ImageFolder root with train/ and val/ (one folder per class)")
    g.add_argument("--nb_classes", type=int, default=None, help="number of classes (default: class folders in train/)")
    g.add_argument("--num_workers", type=int, default=10)
    g.add_argument("--pin_mem", action="store_true", help="pin CPU memory in the loaders (default; CUDA only)")
    g.add_argument("--no_pin_mem", action="store_false", dest="pin_mem")
    p.set_defaults(pin_mem=True)

    g = p.add_argument_group("run")
    g.add_argument("--output_dir", default="./output_dir", help="checkpoints and log.txt ('' to save nothing)")
    g.add_argument("--log_dir", default=None, help="TensorBoard directory (default: OUTPUT_DIR; '' disables)")
    g.add_argument("--device", default=None, help="cuda | cpu (default: cuda if available)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--eval", action="store_true", help="evaluate only")
    g.add_argument("--dist_eval", action="store_true", default=False,
                   help="shard evaluation over processes (each sample counted once)")
    g.add_argument("--print_freq", type=int, default=20, help="iterations between progress lines")

    g = p.add_argument_group("distributed")
    g.add_argument("--world_size", type=int, default=1, help="number of processes (torchrun sets WORLD_SIZE)")
    g.add_argument("--local_rank", "--local-rank", type=int, default=-1)
    g.add_argument("--dist_on_itp", action="store_true", help="read ranks from OpenMPI variables")
    g.add_argument("--dist_url", default="env://", help="torch.distributed init_method")
    return p


def apply_mode_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill ``blr`` / ``weight_decay`` left at None with the finetune or linear-probe default."""
    defaults = LINPROBE_DEFAULTS if args.linprobe else FINETUNE_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def effective_batch_size(args: argparse.Namespace, world_size: int) -> int:
    """Samples per optimiser step over all processes."""
    return args.batch_size * args.accum_iter * world_size


def resolve_lr(args: argparse.Namespace, world_size: int) -> float:
    """Set ``args.lr`` from ``blr`` (lr = blr x effective batch / 256) unless given; return it."""
    if args.lr is None:
        args.lr = args.blr * effective_batch_size(args, world_size) / 256
    return args.lr


def check_args(args: argparse.Namespace) -> None:
    """Reject contradictory or out-of-range flags with a clear message."""
    if args.batch_size < 1 or args.accum_iter < 1:
        raise ValueError("--batch_size and --accum_iter must be >= 1")
    if args.epochs < 1 and not args.eval:
        raise ValueError("--epochs must be >= 1")
    if not args.data_path:
        raise ValueError("--data_path is required (an ImageFolder root holding train/ and val/)")
    if args.nb_classes is not None and args.nb_classes < 1:
        raise ValueError("--nb_classes must be >= 1")
