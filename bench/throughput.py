"""Training throughput, model FLOPs and achieved FLOP/s of vlt pretraining models.

    python bench/throughput.py                       # CPU: VLC base + demo model
    python bench/throughput.py --device cuda --precision bf16 --batch-size 64

For each model it times full optimizer steps (forward of every objective,
backward, AdamW) on synthetic batches, counts the FLOPs of one step with
torch's FlopCounterMode, and divides the achieved FLOP/s by the FLOP/s of a
large matmul measured in the same run (same device, same dtype): a
machine-relative utilisation that does not depend on a datasheet.
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlt.config import _loss_names, default_config, ex  # noqa: E402
from vlt.module import VLTModule  # noqa: E402

VLC_BASE = dict(  # VLC base pretraining: ViT-B/16 at 224 px, 40 text tokens, MLM + ITM + MAE
    vit="vit_base_patch16_224", encoder_manual_configuration=False, image_size=224, patch_size=16,
    max_text_len=40, vocab_size=30522, loss_names=_loss_names({"mlm": 1, "itm": 1, "mae": 1}),
    use_mae=True, is_pretrain=True, mask_ratio=0.6, drop_rate=0.0, decoder_hidden_size=512,
    decoder_num_layers=8, decoder_num_heads=16,
)


def model_config(name: str) -> dict:
    cfg = default_config()
    if name == "vlc_base":
        cfg.update(VLC_BASE)
    elif name == "demo":
        cfg.update({k: v for k, v in ex.named_configs["demo"]().items() if not k.startswith("_")})
    else:
        raise SystemExit(f"unknown model {name!r}: use vlc_base or demo")
    return cfg


def synthetic_batch(cfg: dict, batch_size: int, device: torch.device, seed: int = 0) -> dict:
    """A pretraining batch per docs/ARCHITECTURE.md: images, a false image, text with 15% MLM targets."""
    g = torch.Generator().manual_seed(seed)
    size, length, vocab = cfg["image_size"], cfg["max_text_len"], cfg["vocab_size"]
    ids = torch.randint(1000, vocab, (batch_size, length), generator=g)
    masks = torch.ones_like(ids)
    targets = torch.rand(batch_size, length, generator=g) < cfg["mlm_prob"]
    targets[:, 0] = False
    labels = torch.where(targets, ids, torch.full_like(ids, -100))
    batch = {
        "image": torch.randn(batch_size, 3, size, size, generator=g),
        "false_image_0": torch.randn(batch_size, 3, size, size, generator=g),
        "text_ids": ids, "text_masks": masks, "text_ids_mlm": torch.where(targets, 103, ids),
        "text_labels_mlm": labels,
    }
    return {k: v.to(device) for k, v in batch.items()}


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def train_step(module, optimizer, batch, device, precision) -> None:
    with autocast(device, precision):
        loss = module.total_loss(module.compute_objectives(batch))
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops_per_s(device: torch.device, precision: str, n: int, reps: int) -> float:
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def bench_model(name: str, args, device: torch.device) -> dict:
    cfg = model_config(name)
    batch_size = args.batch_size or (8 if name == "vlc_base" else 64)
    if device.type == "cpu" and name == "vlc_base" and not args.batch_size:
        batch_size = 4
    torch.manual_seed(0)
    module = VLTModule(cfg).to(device).train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    batch = synthetic_batch(cfg, batch_size, device)

    with FlopCounterMode(display=False) as counter:
        train_step(module, optimizer, batch, device, args.precision)
    flops_per_sample = counter.get_total_flops() / batch_size

    for _ in range(args.warmup):
        train_step(module, optimizer, batch, device, args.precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(module, optimizer, batch, device, args.precision)
    sync(device)
    seconds = time.perf_counter() - start
    samples_per_s = batch_size * args.steps / seconds
    memory = (torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20)
    return {"model": name, "batch": batch_size, "params_m": sum(p.numel() for p in module.parameters()) / 1e6,
            "samples_per_s": samples_per_s, "gflop_per_sample": flops_per_sample / 1e9,
            "achieved_tflops": samples_per_s * flops_per_sample / 1e12, "memory_gib": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vlc_base", "demo"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch-size", type=int, default=0, help="0: 4 (vlc_base on CPU), 8 (vlc_base), 64 (demo)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--matmul-size", type=int, default=0, help="0: 4096 on CPU, 8192 on GPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # compare fp32 with fp32, not TF32

    n = args.matmul_size or (8192 if device.type == "cuda" else 4096)
    peak = matmul_flops_per_s(device, args.precision, n, reps=20 if device.type == "cuda" else 3)
    rows = [bench_model(name, args, device) for name in args.models]

    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\ndevice: {name}; precision {args.precision}; torch {torch.__version__}")
    print(f"reference: {n}x{n} matmul at {peak / 1e12:.3f} TFLOP/s\n")
    memory = "peak GPU mem GiB" if device.type == "cuda" else "peak RSS GiB"
    print(f"| model | batch | params (M) | samples/s | GFLOP/sample (train step) | achieved TFLOP/s "
          f"| fraction of matmul | {memory} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['params_m']:.1f} | {r['samples_per_s']:.2f} "
              f"| {r['gflop_per_sample']:.1f} | {r['achieved_tflops']:.3f} "
              f"| {r['achieved_tflops'] * 1e12 / peak:.0%} | {r['memory_gib']:.2f} |")


if __name__ == "__main__":
    main()
