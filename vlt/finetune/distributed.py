"""Process-group setup (torchrun / SLURM / OpenMPI) and the few collectives the loop needs."""
from __future__ import annotations

import argparse
import os
from typing import Sequence

import torch
import torch.distributed as dist


def _ranks_from_env(args: argparse.Namespace) -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) from the launcher's environment, or None when not launched."""
    env = os.environ
    if args.dist_on_itp:
        rank = int(env["OMPI_COMM_WORLD_RANK"])
        world = int(env["OMPI_COMM_WORLD_SIZE"])
        local = int(env["OMPI_COMM_WORLD_LOCAL_RANK"])
        if args.dist_url == "env://":
            args.dist_url = f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
        return rank, world, local
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun / torch.distributed.launch
        local = int(env.get("LOCAL_RANK", max(args.local_rank, 0)))
        return int(env["RANK"]), int(env["WORLD_SIZE"]), local
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return None


def resolve_device(requested: str | None) -> str:
    """'cuda' when available unless told otherwise; a clear error for an unusable request."""
    name = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but CUDA is not available; use --device cpu")
    return name


def init_distributed(args: argparse.Namespace) -> torch.device:
    """Join the process group if launched by torchrun/SLURM/OpenMPI; set args.rank/world_size/distributed.

    Backend: nccl on CUDA, gloo on CPU. Returns this process's device.
    """
    device_name = resolve_device(args.device)
    ranks = _ranks_from_env(args)
    if ranks is None or (ranks[1] == 1 and not args.dist_on_itp):
        args.distributed, args.rank, args.world_size, args.local_rank = False, 0, 1, 0
        args.device = device_name
        return torch.device(device_name)

    args.rank, args.world_size, args.local_rank = ranks
    args.distributed = True
    if device_name.startswith("cuda"):
        torch.cuda.set_device(args.local_rank)
        device = torch.device("cuda", args.local_rank)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    args.device = str(device)
    args.dist_backend = backend
    print(f"| distributed init rank {args.rank}/{args.world_size} local {args.local_rank} "
          f"backend {backend} url {args.dist_url}", flush=True)
    kwargs = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend=backend, init_method=args.dist_url,
                            world_size=args.world_size, rank=args.rank, **kwargs)
    dist.barrier()
    return device


def cleanup() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def print_main(*values, **kwargs) -> None:
    """print() on rank 0 only (flushed, so interleaving with other ranks stays readable)."""
    if is_main_process():
        print(*values, flush=True, **kwargs)


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum numbers over all processes (identity when not distributed)."""
    if get_world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
