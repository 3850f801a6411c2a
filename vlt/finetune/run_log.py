"""Run logging on rank 0: ``log.txt`` JSON lines in the output folder, optional TensorBoard."""
from __future__ import annotations

import json
from pathlib import Path


class RunLog:
    """Per-epoch JSON lines and scalars; every method is a no-op when disabled (other ranks)."""

    def __init__(self, output_dir: str, log_dir: str | None, enabled: bool):
        self.enabled = enabled
        self.log_path = Path(output_dir) / "log.txt" if enabled and output_dir else None
        self.writer = None
        if enabled and log_dir:
            from torch.utils.tensorboard import SummaryWriter  # imported only when used
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=log_dir)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def epoch(self, stats: dict) -> None:
        """Append one JSON line to log.txt and flush TensorBoard."""
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(stats) + "\n")
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
