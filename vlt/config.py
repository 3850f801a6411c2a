"""The Sacred experiment: every default key, ``_loss_names`` and the named configs.

Key names and meanings follow ViLT / VLC / Renaissance so their users feel at
home. ``python run.py print_config with <named> key=value`` shows the result.
Validation (``vlt.config_check.validate_config``) runs before anything is built.
"""
from __future__ import annotations

from sacred import Experiment

ex = Experiment("VLT", save_git_info=False)

LOSS_NAMES = ("itm", "mlm", "mae", "itc", "mpp", "vqa", "nlvr2", "irtr", "cap", "bicap", "cls", "pirl")


def _loss_names(d: dict) -> dict:
    """All objectives at weight 0, then the given weights (0 means off)."""
    unknown = set(d) - set(LOSS_NAMES)
    if unknown:
        raise KeyError(f"unknown objective(s) {sorted(unknown)}; known: {list(LOSS_NAMES)}")
    ret = {name: 0 for name in LOSS_NAMES}
    ret.update(d)
    return ret


@ex.config
def config():
    # ---- general
    exp_name = "vlt"
    seed = 0
    datasets = ["coco", "vg", "sbu", "gcc"]
    loss_names = _loss_names({"itm": 1, "mlm": 1})
    batch_size = 4096  # effective batch; per-step batch is per_gpu_batchsize x devices, the rest is accumulated
    per_gpu_batchsize = 0  # 0 -> must be set on the command line
    eval_batch_size = 0  # 0 -> per_gpu_batchsize

    # ---- image
    train_transform_keys = ["pixelbert"]
    val_transform_keys = ["pixelbert"]
    image_size = 224
    patch_size = 16
    max_image_len = -1  # -1: all patches; >0: randomly sample this many patches (ViLT)
    draw_false_image = 1
    image_only = False
    original_image_size = 224  # size the image encoder was pretrained at (position-embedding source)

    # ---- text
    tokenizer = "bert-base-uncased"  # hub name or local directory
    vocab_size = 30522
    max_text_len = 40
    whole_word_masking = False
    mlm_prob = 0.15
    draw_false_text = 0
    vqav2_label_size = 3129

    # ---- one-tower transformer
    model_type = "one-tower"  # one-tower | two-tower
    vit = "vit_base_patch16_224"  # timm name of the one-tower ViT
    encoder = ""  # HF hub name / local directory of a one-tower HF encoder (empty: use `vit`)
    hidden_size = 768
    num_heads = 12
    num_layers = 12
    mlp_ratio = 4
    drop_rate = 0.1
    drop_path_rate = 0.0
    pooler_type = "single"  # single | double
    random_init_encoder = False
    encoder_manual_configuration = False
    embedding_size = 768

    # ---- two-tower (Renaissance)
    image_encoder = "facebook/deit-tiny-patch16-224"
    text_encoder = "google/electra-small-discriminator"
    random_init_vision_encoder = False
    random_init_text_encoder = False
    image_encoder_manual_configuration = False
    image_encoder_hidden_size = 768
    image_encoder_num_heads = 12
    image_encoder_num_layers = 12
    image_encoder_mlp_ratio = 4
    image_encoder_drop_rate = 0.1
    image_encoder_embedding_size = 768
    text_encoder_manual_configuration = False
    text_encoder_hidden_size = 768
    text_encoder_num_heads = 12
    text_encoder_num_layers = 12
    text_encoder_mlp_ratio = 4
    text_encoder_drop_rate = 0.1
    text_encoder_embedding_size = 768
    cross_layer_hidden_size = 768
    num_cross_layers = 6
    num_cross_layer_heads = 12
    cross_layer_mlp_ratio = 4
    cross_layer_drop_rate = 0.1
    freeze_image_encoder = False
    freeze_text_encoder = False
    freeze_cross_modal_layers = False

    # ---- MAE (VLC)
    pretrain_path = ""  # MAE checkpoint ({'model': state_dict}, timm ViT key names)
    mask_ratio = 0.6
    use_mae = False
    mae_weight = 1.0
    norm_pix_loss = True
    is_pretrain = True
    decoder_hidden_size = 512
    decoder_num_layers = 8
    decoder_num_heads = 16

    # ---- optimiser
    optim_type = "adamw"
    learning_rate = 1e-4
    weight_decay = 0.01
    decay_power = 1
    max_epoch = 100
    max_steps = 25000  # -1: limited by max_epoch
    warmup_steps = 2500  # int steps, or a fraction of max_steps
    end_lr = 0.0
    lr_mult = 1  # ViLT/VLC name of the head multiplier (used when lr_mult_head is unset)
    lr_mult_head = -1  # -1: take lr_mult
    lr_mult_cross_modal = 1
    layer_decay = 1.0  # 1.0: off
    lr_sched = "polynomial"  # polynomial | linear_warmup_cosine_lr | linear_warmup_step_lr
    lr_decay_rate = 0.1  # linear_warmup_step_lr: multiply each epoch
    warmup_lr = 0.0
    min_lr = 0.0
    gradient_clip_val = 0.0

    # ---- downstream
    get_recall_metric = False
    k_test = 128
    negative_all_rank = False
    num_beams = 3
    max_len = 30
    min_len = 5

    # ---- data subsets (VirTex)
    use_percentage = 100
    use_single_caption = False

    # ---- run
    data_root = ""
    log_dir = "result"
    num_gpus = 1  # 0: CPU
    cpu_devices = 1  # processes when num_gpus=0 (>1: DDP over gloo)
    num_nodes = 1
    num_workers = 8
    precision = "32-true"  # Lightning precision string; 16 / "bf16-mixed" etc. accepted
    load_path = ""
    resume_from = ""
    test_only = False
    val_check_interval = 1.0
    fast_dev_run = False
    log_every_n_steps = 50
    limit_val_batches = 1.0
    save_top_k = 1
    deterministic = False
    progress_bar = True


# ---------------------------------------------------------------- step budgets


@ex.named_config
def step25k():
    max_epoch = 100
    max_steps = 25000


@ex.named_config
def step50k():
    max_epoch = 100
    max_steps = 50000


@ex.named_config
def step100k():
    max_epoch = 100
    max_steps = 100000


@ex.named_config
def step200k():
    max_epoch = 200
    max_steps = 200000


# ---------------------------------------------------------------- pretraining


@ex.named_config
def task_mlm_itm():
    exp_name = "mlm_itm"
    datasets = ["coco", "vg", "sbu", "gcc"]
    loss_names = _loss_names({"itm": 1, "mlm": 1})
    batch_size = 4096
    max_epoch = 10
    max_image_len = 200


@ex.named_config
def task_mlm_itm_mae():
    # VLC pretraining: MLM + ITM + MAE on a ViT initialised from an MAE checkpoint.
    exp_name = "mlm_itm_mae"
    datasets = ["coco", "vg", "sbu", "gcc"]
    loss_names = _loss_names({"itm": 1, "mlm": 1, "mae": 1})
    batch_size = 4096
    max_epoch = 10
    use_mae = True
    is_pretrain = True
    mask_ratio = 0.6
    train_transform_keys = ["mae"]
    val_transform_keys = ["mae_test"]
    vit = "vit_base_patch16_224"
    drop_rate = 0.0
    learning_rate = 1e-4
    weight_decay = 0.01
    lr_sched = "polynomial"
    warmup_steps = 0.1


def default_config() -> dict:
    """The default config as a plain dict (what `print_config` shows without named configs)."""
    values = ex.configurations[0]()
    return {k: v for k, v in values.items() if not k.startswith("_")}


def named_config_names() -> list[str]:
    return sorted(ex.named_configs)
