"""Image-classification finetuning and linear probing of pretrained ViTs (MAE ImageNet recipe).

Entry point: ``main_finetune.py`` at the repository root (``torchrun`` or plain ``python``).
Modules: ``args`` (flags), ``distributed`` (process group), ``data`` / ``transforms``
(ImageFolder + loaders), ``model`` (timm classifier), ``pretrained`` (``--finetune``
loading), ``optim`` / ``lr_schedule``, ``engine`` (train/eval loops), ``checkpoint``,
``run_log``, ``runner`` (``main``).
"""
from .args import get_args_parser
from .runner import main

__all__ = ["get_args_parser", "main"]
