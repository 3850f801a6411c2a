"""vlt: pretraining and finetuning of vision-language transformers."""

__version__ = "0.1.0"
