"""Config defaults, named configs, and the fail-fast checks of run.py."""
import subprocess
import sys
from pathlib import Path

import pytest

from vlt.config import LOSS_NAMES, _loss_names, default_config, named_config_names
from vlt.config_check import ConfigError, check_cli_updates, validate_config

ROOT = Path(__file__).resolve().parents[1]

DESIGN_KEYS = """exp_name seed datasets loss_names batch_size per_gpu_batchsize eval_batch_size
train_transform_keys val_transform_keys image_size patch_size max_image_len draw_false_image image_only
tokenizer vocab_size max_text_len whole_word_masking mlm_prob draw_false_text vqav2_label_size
vit hidden_size num_heads num_layers mlp_ratio drop_rate encoder pooler_type random_init_encoder
encoder_manual_configuration embedding_size model_type image_encoder text_encoder random_init_vision_encoder
random_init_text_encoder image_encoder_manual_configuration image_encoder_hidden_size image_encoder_num_heads
image_encoder_num_layers image_encoder_mlp_ratio image_encoder_drop_rate image_encoder_embedding_size
text_encoder_manual_configuration text_encoder_hidden_size cross_layer_hidden_size num_cross_layers
num_cross_layer_heads cross_layer_mlp_ratio cross_layer_drop_rate freeze_image_encoder freeze_text_encoder
freeze_cross_modal_layers original_image_size pretrain_path mask_ratio use_mae mae_weight norm_pix_loss
is_pretrain optim_type learning_rate weight_decay decay_power max_epoch max_steps warmup_steps end_lr lr_mult
lr_mult_head lr_mult_cross_modal layer_decay lr_sched lr_decay_rate warmup_lr min_lr get_recall_metric k_test
negative_all_rank num_beams max_len min_len data_root log_dir num_gpus num_nodes num_workers precision
load_path resume_from test_only val_check_interval fast_dev_run use_percentage use_single_caption""".split()


def valid(**updates):
    cfg = default_config()
    cfg.update(per_gpu_batchsize=8, **updates)
    return cfg


def test_every_design_key_has_a_default():
    missing = [k for k in DESIGN_KEYS if k not in default_config()]
    assert missing == []


def test_loss_names_are_weights():
    weights = _loss_names({"mlm": 0.5, "itm": 2})
    assert set(weights) == set(LOSS_NAMES)
    assert weights["mlm"] == 0.5 and weights["itm"] == 2 and weights["mae"] == 0
    with pytest.raises(KeyError, match="known"):
        _loss_names({"mlmx": 1})


def test_named_configs_present():
    names = named_config_names()
    for name in ("task_mlm_itm_mae", "task_mlm_itm", "step25k", "step50k", "step100k", "step200k"):
        assert name in names


@pytest.mark.parametrize("argv, message", [
    (["with", "learning_rat=1e-4"], "did you mean 'learning_rate'"),
    (["with", "task_mlm_itmx"], "did you mean 'task_mlm_itm'"),
    (["with", "loss_names.mlmm=1"], "did you mean 'mlm'"),
    (["with", "seed.x=1"], "is not a dict"),
])
def test_cli_rejects_unknown_keys_with_closest_match(argv, message):
    with pytest.raises(ConfigError, match=message):
        check_cli_updates(argv, default_config(), named_config_names())


def test_cli_accepts_known_keys_and_yaml(tmp_path):
    yaml_file = tmp_path / "x.yaml"
    yaml_file.write_text("learning_rate: 0.001\nloss_names:\n  mlm: 1\n")
    check_cli_updates(["print_config", "with", "task_mlm_itm", "learning_rate=1e-3", str(yaml_file)],
                      default_config(), named_config_names())
    yaml_file.write_text("learnin_rate: 0.001\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        check_cli_updates(["with", str(yaml_file)], default_config(), named_config_names())


@pytest.mark.parametrize("updates, message", [
    ({"per_gpu_batchsize": 64, "batch_size": 32}, "larger than the effective batch_size"),
    ({"model_type": "three-tower"}, "did you mean 'two-tower'"),
    ({"learning_rate": "fast"}, "learning_rate"),
    ({"max_text_len": 40.5}, "max_text_len"),
    ({"whole_word_masking": 1}, "whole_word_masking"),
    ({"loss_names": _loss_names({})}, "weight 0"),
    ({"mask_ratio": 1.5}, "mask_ratio"),
    ({"resume_from": "/nonexistent.ckpt"}, "does not exist"),
    ({"per_gpu_batchsize": 0}, "per_gpu_batchsize must be set"),
])
def test_validate_rejects_bad_values(updates, message):
    cfg = valid()
    cfg.update(updates)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_validate_accepts_defaults_and_fractional_warmup():
    validate_config(valid(warmup_steps=0.1, precision="bf16-mixed"))


def _run_py(*args):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_run_py_print_config_and_typo():
    out = _run_py("print_config", "with", "task_mlm_itm_mae", "mae_weight=0.5")
    assert out.returncode == 0, out.stderr
    assert "mae_weight = 0.5" in out.stdout
    bad = _run_py("with", "learning_rat=1e-4")
    assert bad.returncode != 0
    assert "did you mean 'learning_rate'" in bad.stderr


def test_yaml_configs_in_repo_compose():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        check_cli_updates(["with", str(path)], default_config(), named_config_names())
    out = _run_py("print_config", "with", "demo", str(ROOT / "configs" / "demo_small.yaml"))
    assert out.returncode == 0, out.stderr
    assert "hidden_size = 64" in out.stdout and "exp_name = 'demo_small'" in out.stdout
