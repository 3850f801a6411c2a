"""Fail fast on bad configuration: unknown keys, wrong types, impossible combinations.

Sacred already refuses unknown keys, but without saying what was meant; these
checks name the closest valid key and run before any data or model is built.
"""
from __future__ import annotations

import difflib
import numbers
from pathlib import Path
from typing import Iterable

CHOICES = {
    "model_type": ("one-tower", "two-tower"),
    "pooler_type": ("single", "double"),
    "lr_sched": ("polynomial", "linear_warmup_cosine_lr", "linear_warmup_step_lr"),
    "optim_type": ("adamw", "adam", "sgd"),
}

# Keys whose value may legitimately take another type than their default's.
NUMERIC_EITHER = {"warmup_steps", "val_check_interval", "limit_val_batches", "lr_mult", "lr_mult_head",
                  "lr_mult_cross_modal", "learning_rate", "weight_decay", "end_lr", "min_lr", "warmup_lr"}
FLEXIBLE = {"precision": (int, str), "fast_dev_run": (bool, int), "use_percentage": (int, float)}


class ConfigError(ValueError):
    """A configuration value or combination that cannot work; the message says how to fix it."""


def closest(name: str, valid: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest valid name, or ''."""
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def check_cli_updates(argv: list[str], defaults: dict, named_configs: Iterable[str]) -> None:
    """Check the ``with ...`` part of a run.py command line before Sacred parses it.

    Each ``key=value`` must name a default key (``a.b=...`` a key of dict ``a``);
    each bare word must be a named config or an existing YAML/JSON file.
    """
    if "with" not in argv:
        return
    named = set(named_configs)
    for token in argv[argv.index("with") + 1:]:
        if token.startswith("-"):
            break
        if "=" in token:
            check_key(token.split("=", 1)[0], defaults)
        elif Path(token).suffix in {".yaml", ".yml", ".json"}:
            if not Path(token).is_file():
                raise ConfigError(f"config file {token} does not exist")
            check_config_file(token, defaults)
        elif token not in named:
            raise ConfigError(f"unknown named config '{token}'{closest(token, named)}; "
                              f"see `python run.py print_named_configs`")


def check_key(dotted: str, defaults: dict) -> None:
    """Raise ConfigError when ``dotted`` (``key`` or ``dict_key.sub``) is not a config key."""
    head, _, rest = dotted.partition(".")
    if head not in defaults:
        raise ConfigError(f"unknown config key '{head}'{closest(head, defaults)}")
    if rest:
        sub = defaults[head]
        if not isinstance(sub, dict):
            raise ConfigError(f"config key '{head}' is not a dict, so '{dotted}' cannot be set")
        check_key(rest, sub)


def check_config_file(path: str, defaults: dict) -> None:
    import yaml

    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of config keys")
    for key, value in data.items():
        check_key(key, defaults)
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            for sub in value:
                check_key(f"{key}.{sub}", defaults)


def _type_ok(key: str, value, default) -> bool:
    if key in FLEXIBLE:
        return isinstance(value, FLEXIBLE[key])
    if isinstance(default, bool):
        return isinstance(value, bool)
    if key in NUMERIC_EITHER or isinstance(default, float):
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, (str, dict)):
        return isinstance(value, type(default))
    return True


def validate_config(config: dict, defaults: dict | None = None) -> dict:
    """Check a composed config; return it unchanged or raise ConfigError."""
    if defaults is None:
        from vlt.config import default_config

        defaults = default_config()
    for key, value in config.items():
        if key == "seed" or key not in defaults:
            continue  # Sacred adds `seed`; unknown keys are caught at parse time
        if not _type_ok(key, value, defaults[key]):
            raise ConfigError(f"config key '{key}' should be {type(defaults[key]).__name__} "
                              f"(like the default {defaults[key]!r}), got {value!r}")
    for key, allowed in CHOICES.items():
        if config.get(key) not in allowed:
            raise ConfigError(f"{key}={config.get(key)!r} is not one of {allowed}"
                              f"{closest(str(config.get(key)), allowed)}")
    _check_losses(config)
    _check_batches(config)
    _check_ranges(config)
    return config


def _check_losses(config: dict) -> None:
    from vlt.config import LOSS_NAMES

    weights = config["loss_names"]
    for name, weight in weights.items():
        if name not in LOSS_NAMES:
            raise ConfigError(f"unknown objective '{name}' in loss_names{closest(name, LOSS_NAMES)}")
        if not isinstance(weight, numbers.Real) or weight < 0:
            raise ConfigError(f"loss_names.{name} must be a weight >= 0 (0 = off), got {weight!r}")
    if not any(w > 0 for w in weights.values()):
        raise ConfigError("every objective in loss_names has weight 0: set at least one, "
                          "e.g. `with task_mlm_itm` or `loss_names.mlm=1`")


def _check_batches(config: dict) -> None:
    per_gpu, total = config["per_gpu_batchsize"], config["batch_size"]
    if per_gpu <= 0:
        raise ConfigError("per_gpu_batchsize must be set (> 0), e.g. `per_gpu_batchsize=32`")
    if per_gpu > total:
        raise ConfigError(f"per_gpu_batchsize={per_gpu} is larger than the effective batch_size={total}; "
                          f"lower per_gpu_batchsize or raise batch_size")
    if config["num_gpus"] < 0 or config["num_nodes"] < 1:
        raise ConfigError("num_gpus must be >= 0 (0 = CPU) and num_nodes >= 1")
    if config["eval_batch_size"] < 0:
        raise ConfigError("eval_batch_size must be >= 0 (0 = per_gpu_batchsize)")


def _check_ranges(config: dict) -> None:
    if not 0.0 <= config["mask_ratio"] < 1.0:
        raise ConfigError(f"mask_ratio must be in [0, 1), got {config['mask_ratio']}")
    if not 0.0 <= config["mlm_prob"] < 1.0:
        raise ConfigError(f"mlm_prob must be in [0, 1), got {config['mlm_prob']}")
    if not 0 < config["use_percentage"] <= 100:
        raise ConfigError(f"use_percentage must be in (0, 100], got {config['use_percentage']}")
    if config["image_size"] % config["patch_size"] and config["encoder_manual_configuration"]:
        raise ConfigError(f"image_size={config['image_size']} is not a multiple of patch_size={config['patch_size']}")
    if config["warmup_steps"] < 0:
        raise ConfigError("warmup_steps must be >= 0 (steps, or a fraction of max_steps below 1)")
    if not config["datasets"]:
        raise ConfigError("datasets is empty: name at least one, e.g. `datasets=['coco']`")
    for key in ("resume_from", "load_path", "pretrain_path"):
        if config[key] and not Path(config[key]).is_file():
            raise ConfigError(f"{key}={config[key]} does not exist")
    if config["resume_from"] and config["load_path"]:
        raise ConfigError("set either resume_from (continue a run) or load_path (load weights), not both")
    if config["max_steps"] in (0,) or (config["max_steps"] < 0 and config["max_epoch"] <= 0):
        raise ConfigError("training length is zero: set max_steps > 0 or max_steps=-1 with max_epoch > 0")
