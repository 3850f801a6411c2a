"""main_finetune.py / vlt.finetune: tiny ViT, tiny ImageFolder, CPU only."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.layers import resample_abs_pos_embed

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

from vlt.finetune import get_args_parser, main  # noqa: E402
from vlt.finetune.args import apply_mode_defaults, resolve_lr  # noqa: E402
from vlt.finetune.data import ShardSampler, build_datasets, build_loaders  # noqa: E402
from vlt.finetune.engine import evaluate  # noqa: E402
from vlt.finetune.lr_schedule import adjust_learning_rate, lr_at  # noqa: E402
from vlt.finetune.model import create_model, freeze_for_linprobe  # noqa: E402
from vlt.finetune.optim import build_param_groups  # noqa: E402
from vlt.finetune.pretrained import load_pretrained  # noqa: E402

COCO = Path("/work/shared/data/coco/val2017")
MODEL = "vit_tiny_patch16_224"
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8}
CLASSES = ("ant", "bee", "cat")
N_VAL_READABLE = 13  # 3 classes x 4 + one greyscale; odd, so 2 shards are uneven


def _tiny_vit(img_size=32, **kw):
    return timm.create_model(MODEL, pretrained=False, img_size=img_size, **TINY, **kw)


def _write_imagefolder(root: Path) -> Path:
    """train/ (10 per class + odd formats + corrupt + COCO crops) and val/ (4 per class + odd ones)."""
    rng = np.random.default_rng(0)

    def img(ci):
        base = np.zeros((32, 32, 3), np.float32)
        base[..., ci] = 200
        return (base + rng.random((32, 32, 3)) * 55).astype(np.uint8)

    for split, n in (("train", 10), ("val", 4)):
        for ci, c in enumerate(CLASSES):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(img(ci)).save(d / f"{i}.{'png' if i % 2 else 'jpg'}")
        odd = root / split / CLASSES[0]
        Image.fromarray(img(0)[..., 0], "L").save(odd / "grey.jpg")
        (odd / "corrupt.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    odd = root / "train" / CLASSES[0]
    Image.fromarray(img(0)).convert("P", palette=Image.Palette.ADAPTIVE).save(odd / "pal.gif", transparency=0)
    Image.fromarray(np.dstack([img(0), np.full((32, 32), 128, np.uint8)]), "RGBA").save(odd / "rgba.png")
    for i, p in enumerate(sorted(COCO.glob("*.jpg"))[:2] if COCO.is_dir() else []):
        with Image.open(p) as im:
            im.convert("RGB").crop((0, 0, 128, 128)).resize((40, 40)).save(root / "train" / CLASSES[1] / f"coco{i}.jpg")
    return root


def _vlt_checkpoint(path: Path, img_size=32) -> dict:
    """A vlt-style Lightning checkpoint: ViT under backbone.vit. plus text/head/decoder junk."""
    torch.manual_seed(1)
    vit = _tiny_vit(img_size, num_classes=0, global_pool="token")
    sd = {"backbone.vit." + k: v.clone() for k, v in vit.state_dict().items()}
    sd.update({
        "backbone.text_embeddings.word_embeddings.weight": torch.randn(50, 32),
        "backbone.token_type_embeddings.weight": torch.randn(3, 32),
        "backbone.pooler.dense.weight": torch.randn(32, 32),
        "heads.mlm.decoder.weight": torch.randn(50, 32),
        "mae_decoder.decoder_embed.weight": torch.randn(16, 32),
    })
    torch.save({"state_dict": sd, "epoch": 3, "global_step": 30,
                "hyper_parameters": {"config": {"vit": MODEL, "image_size": img_size}}}, path)
    return vit.state_dict()


def _args(data, out, *extra):
    return get_args_parser().parse_args([
        "--model", MODEL, "--model_kwargs", json.dumps(TINY), "--data_path", str(data),
        "--output_dir", str(out), "--device", "cpu", "--num_workers", "0", "--batch_size", "4",
        "--warmup_epochs", "1", "--print_freq", "2", *map(str, extra)])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """In-process runs on 1 thread: tiny models run several times faster than with 2 contending threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return _write_imagefolder(tmp_path_factory.mktemp("imagefolder"))


@pytest.fixture(scope="module")
def vlt_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "pretrain.ckpt"
    return path, _vlt_checkpoint(path)


# ---------------------------------------------------------------- flags and lr

def test_mae_defaults_and_pool_flags():
    p = get_args_parser()
    a = apply_mode_defaults(p.parse_args([]))
    assert (a.batch_size, a.epochs, a.accum_iter, a.model, a.input_size) == (64, 50, 1, "vit_large_patch16", 224)
    assert (a.blr, a.weight_decay, a.layer_decay, a.min_lr, a.warmup_epochs) == (1e-3, 0.05, 0.75, 1e-6, 5)
    assert (a.smoothing, a.reprob, a.remode, a.aa, a.mixup, a.cutmix) == (0.1, 0.25, "pixel", "rand-m9-mstd0.5-inc1", 0, 0)
    assert a.global_pool and a.pin_mem and a.lr is None and a.nb_classes is None and a.dist_url == "env://"
    assert not p.parse_args(["--cls_token"]).global_pool
    assert not p.parse_args(["--no_pin_mem"]).pin_mem
    with pytest.raises(SystemExit):
        p.parse_args(["--global_pool", "--cls_token"])
    lp = apply_mode_defaults(p.parse_args(["--linprobe"]))
    assert (lp.blr, lp.weight_decay) == (0.1, 0.0)


def test_lr_from_blr_and_effective_batch():
    a = apply_mode_defaults(get_args_parser().parse_args(["--blr", "5e-4", "--batch_size", "32", "--accum_iter", "2"]))
    assert resolve_lr(a, world_size=32) == pytest.approx(5e-4 * 32 * 2 * 32 / 256)
    b = get_args_parser().parse_args(["--lr", "0.01"])
    assert resolve_lr(apply_mode_defaults(b), world_size=8) == 0.01


def test_layer_decay_groups():
    depth, ld = TINY["depth"], 0.65
    model = _tiny_vit(num_classes=3, global_pool="avg")
    names = {id(p): n for n, p in model.named_parameters()}
    groups = build_param_groups(model, weight_decay=0.05, layer_decay=ld)
    assert sum(len(g["params"]) for g in groups) == len(names)
    for g in groups:
        for p in g["params"]:
            n = names[id(p)]
            if n in ("cls_token", "pos_embed") or n.startswith("patch_embed"):
                layer_id = 0
            elif n.startswith("blocks."):
                layer_id = int(n.split(".")[1]) + 1
            else:
                layer_id = depth + 1
            assert g["lr_scale"] == pytest.approx(ld ** (depth + 1 - layer_id)), n
            no_decay = p.ndim == 1 or n in ("cls_token", "pos_embed")
            assert g["weight_decay"] == (0.0 if no_decay else 0.05), n


def test_warmup_cosine_schedule_honours_lr_scale():
    a = SimpleNamespace(lr=1.0, min_lr=0.01, warmup_epochs=2, epochs=10)
    at = lambda e: lr_at(e, a.lr, a.min_lr, a.warmup_epochs, a.epochs)  # noqa: E731
    assert [at(0), at(1), at(2)] == pytest.approx([0.0, 0.5, 1.0])
    assert at(6) == pytest.approx((1.0 + 0.01) / 2)
    assert at(10) == pytest.approx(0.01)
    assert at(4) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    cosine = [at(2 + 8 * i / 50) for i in range(51)]
    assert all(x >= y for x, y in zip(cosine, cosine[1:]))
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.AdamW([{"params": [w], "lr_scale": 0.25}, {"params": [torch.zeros(1, requires_grad=True)]}])
    lr = adjust_learning_rate(opt, 1.0, a)
    assert lr == pytest.approx(0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.125, 0.5])


# ---------------------------------------------------------------- --finetune loading

def _model_args(input_size, global_pool=True, nb_classes=3):
    return SimpleNamespace(model=MODEL, model_kwargs=TINY, input_size=input_size, drop_path=0.1,
                           global_pool=global_pool, linprobe=False, nb_classes=nb_classes)


def test_finetune_from_vlt_checkpoint_with_pos_embed_resampling(vlt_ckpt, capsys):
    path, src = vlt_ckpt
    model = create_model(_model_args(48), num_classes=3)
    report = load_pretrained(model, path, global_pool=True)
    sd = model.state_dict()
    for k in ("cls_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias"):
        assert torch.equal(sd[k], src[k]), k
    assert sd["pos_embed"].shape == (1, 1 + 6 * 6, 32)
    expected = resample_abs_pos_embed(src["pos_embed"], new_size=[6, 6], num_prefix_tokens=1)
    assert torch.allclose(sd["pos_embed"], expected)
    assert torch.equal(sd["pos_embed"][:, 0], src["pos_embed"][:, 0])
    assert report.source_format == "vlt-lightning"
    assert len(report.dropped) == 5 and all(not k.startswith("backbone.vit.") for k in report.dropped)
    assert not any("text_embeddings" in k or "heads." in k for k in report.loaded + report.unexpected)
    assert set(report.missing) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert set(report.unexpected) == {"norm.weight", "norm.bias"}  # global_pool: not loaded into fc_norm
    assert 0 < sd["head.weight"].std() < 1e-4 and not sd["head.bias"].any()
    out = capsys.readouterr().out
    assert "backbone.text_embeddings.*" in out and "4x4 to 6x6" in out and "norm.* is not used" in out


@pytest.mark.parametrize("layout", ["mae", "plain"])
def test_finetune_from_mae_and_plain_state_dicts(tmp_path, layout):
    torch.manual_seed(2)
    src = _tiny_vit(32, num_classes=7, global_pool="token").state_dict()
    path = tmp_path / "w.pth"
    torch.save({"model": {"module." + k: v for k, v in src.items()}} if layout == "mae" else src, path)
    model = create_model(_model_args(32, global_pool=False), num_classes=3)
    report = load_pretrained(model, path, global_pool=False)
    sd = model.state_dict()
    for k in ("pos_embed", "norm.weight", "blocks.1.attn.proj.weight"):
        assert torch.equal(sd[k], src[k]), k
    assert set(report.missing) == {"head.weight", "head.bias"} and not report.unexpected
    assert any("head shape differs" in n for n in report.notes)


def test_finetune_checkpoint_with_python_objects_loads_with_warning(tmp_path, capsys):
    import argparse
    src = _tiny_vit(32, num_classes=0, global_pool="token").state_dict()
    path = tmp_path / "objects.ckpt"
    torch.save({"state_dict": {"backbone.vit." + k: v for k, v in src.items()},
                "hyper_parameters": {"config": argparse.Namespace(vit=MODEL)}}, path)
    model = create_model(_model_args(32), 3)
    load_pretrained(model, path, global_pool=True)
    assert torch.equal(model.state_dict()["blocks.0.attn.qkv.weight"], src["blocks.0.attn.qkv.weight"])
    assert "weights_only=False" in capsys.readouterr().out


def test_finetune_rejects_a_checkpoint_without_vit(tmp_path):
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"heads.mlm.decoder.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(ValueError, match="backbone.vit"):
        load_pretrained(create_model(_model_args(32), 3), path, global_pool=True)


# ---------------------------------------------------------------- data

def test_imagefolder_odd_formats_and_corrupt_file(data_root, tmp_path, capfd):
    args = apply_mode_defaults(_args(data_root, tmp_path, "--input_size", "32"))
    train, val = build_datasets(args)
    assert args.nb_classes == 3 and val.classes == train.classes
    loader, _ = build_loaders(args, train, val, rank=0, world_size=1)
    n_good = n_bad = 0
    for images, targets, dropped in loader:
        n_bad += dropped
        if images is not None:
            assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.float32
            n_good += len(images)
    assert n_bad == 1
    names = {Path(p).name for p, _ in train.samples}
    assert {"pal.gif", "grey.jpg", "rgba.png", "corrupt.jpg"} <= names
    for name in ("pal.gif", "grey.jpg", "rgba.png"):
        idx = next(i for i, (p, _) in enumerate(train.samples) if p.endswith(name))
        assert train[idx][0].shape == (3, 32, 32)
    assert "corrupt.jpg" in capfd.readouterr().err


def test_missing_split_is_a_clear_error(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    args = apply_mode_defaults(_args(tmp_path, tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match=r"val.*train/ and val/"):
        build_datasets(args)


def test_shard_sampler_counts_each_sample_once():
    shards = [list(ShardSampler(13, r, 2)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(13)) and len(shards[0]) == 7


# ---------------------------------------------------------------- evaluation

def test_evaluate_matches_hand_topk(data_root, tmp_path):
    args = apply_mode_defaults(_args(data_root, tmp_path, "--input_size", "32", "--nb_classes", "10", "--eval"))
    _, val = build_datasets(args)
    _, loader = build_loaders(args, None, val, rank=0, world_size=1)
    torch.manual_seed(3)
    model = create_model(_model_args(32, nb_classes=10), num_classes=10).eval()
    torch.nn.init.normal_(model.head.weight, std=3.0)
    stats = evaluate(model, loader, torch.device("cpu"), num_classes=10, reduce=False)
    logits, targets = [], []
    with torch.no_grad():
        for i in range(len(val)):
            item = val[i]
            if item is not None:
                logits.append(model(item[0][None])[0])
                targets.append(item[1])
    logits, targets = torch.stack(logits), torch.tensor(targets)
    top5 = torch.topk(logits, 5, dim=1).indices
    assert stats["n"] == len(targets) == N_VAL_READABLE and stats["skipped_images"] == 1
    assert stats["acc1"] == pytest.approx(100 * (top5[:, 0] == targets).float().mean().item())
    assert stats["acc5"] == pytest.approx(100 * (top5 == targets[:, None]).any(1).float().mean().item())
    assert stats["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-4)


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def torchrun_run(data_root, vlt_ckpt, tmp_path_factory):
    """One epoch on 2 CPU processes (gloo) from a vlt checkpoint made at 32 px, finetuned at 48 px."""
    out = tmp_path_factory.mktemp("ddp_out")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "main_finetune.py"), "--model", MODEL, "--model_kwargs", json.dumps(TINY),
           "--finetune", str(vlt_ckpt[0]), "--data_path", str(data_root), "--output_dir", str(out),
           "--input_size", "48", "--nb_classes", "10", "--epochs", "1", "--batch_size", "4",
           "--accum_iter", "2", "--warmup_epochs", "1", "--blr", "5e-4", "--layer_decay", "0.65", "--mixup", "0.8",
           "--cutmix", "1.0", "--reprob", "0.25", "--clip_grad", "1.0", "--dist_eval",
           "--device", "cpu", "--num_workers", "0", "--print_freq", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc, out


def test_torchrun_two_processes_cpu(torchrun_run):
    proc, out = torchrun_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0]
    assert lines[0]["test_n"] == N_VAL_READABLE and lines[0]["test_skipped_images"] == 1
    assert lines[0]["train_skipped_images"] == 1 and math.isfinite(lines[0]["train_loss"])
    assert (out / "checkpoint-last.pth").is_file() and (out / "checkpoint-0.pth").is_file()
    assert not list(out.glob(".*tmp*"))
    assert list(out.glob("events.out.tfevents*"))
    logs = proc.stdout + proc.stderr
    assert "corrupt.jpg" in logs and "backbone.text_embeddings.*" in logs and "4x4 to 6x6" in logs
    assert "effective batch 16" in logs and "backend gloo" in logs


def test_resume_continues_then_eval_reproduces(torchrun_run, data_root, capsys):
    proc, out = torchrun_run
    assert proc.returncode == 0
    common = ["--input_size", "48", "--nb_classes", "10", "--blr", "5e-4", "--layer_decay", "0.65"]
    stats = main(_args(data_root, out, *common, "--epochs", "2", "--resume", "auto"))
    assert "continuing at epoch 1" in capsys.readouterr().out
    lines = [json.loads(x) for x in (out / "log.txt").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1]
    ckpt = torch.load(out / "checkpoint-last.pth", weights_only=True)
    assert ckpt["epoch"] == 1 and (out / "checkpoint-1.pth").is_file()
    ev = main(_args(data_root, out, *common, "--eval", "--resume", str(out / "checkpoint-last.pth")))
    assert ev["n"] == N_VAL_READABLE
    assert (ev["acc1"], ev["acc5"]) == (stats["acc1"], stats["acc5"]) == (lines[1]["test_acc1"], lines[1]["test_acc5"])


def test_linprobe_trains_only_the_head(data_root, tmp_path):
    torch.manual_seed(4)
    src = _tiny_vit(32, num_classes=0, global_pool="token").state_dict()
    torch.save(src, tmp_path / "plain.pth")
    model = create_model(_model_args(32, global_pool=False), 3)
    assert freeze_for_linprobe(model) == ["head.weight", "head.bias"]
    main(_args(data_root, tmp_path / "out", "--linprobe", "--cls_token", "--input_size", "32", "--epochs", "1",
               "--finetune", tmp_path / "plain.pth", "--log_dir", ""))
    trained = torch.load(tmp_path / "out" / "checkpoint-last.pth", weights_only=True)["model"]
    for k, v in src.items():
        assert torch.equal(trained[k], v), k
    assert trained["head.weight"].shape == (3, 32) and trained["head.weight"].abs().sum() > 0
    assert not list((tmp_path / "out").glob("events.out.tfevents*"))


def test_randaugment_posterize_at_full_magnitude():
    """timm's 'inc' Posterize asks for 0 bits at magnitude 10; Pillow 13 would raise."""
    from timm.data.auto_augment import AugmentOp
    from vlt.finetune.transforms import finetune_train_transform
    args = SimpleNamespace(input_size=32, color_jitter=None, aa="rand-m9-mstd0.5-inc1", reprob=0.25,
                           remode="pixel", recount=1)
    transform = finetune_train_transform(args)
    op = next(o for t in transform.transforms for o in getattr(t, "ops", [])
              if isinstance(o, AugmentOp) and o.name == "PosterizeIncreasing")
    op.prob, op.magnitude, op.magnitude_std = 1.0, 10, 0
    out = op(Image.new("RGB", (8, 8), (200, 100, 50)))
    assert out.size == (8, 8) and not np.asarray(out).any()
