"""MLM / ITM / MAE objectives against hand computations, and the shared pass cache."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from test_models import VOCAB, make_batch, tiny_config
from vlt.models import ITMHead, MAEDecoder, MLMHead, OneTowerBackbone
from vlt.objectives import Passes, compute_itm, compute_mae, compute_mlm, patchify
from vlt.objectives.mae import mae_loss


class RecordingBackbone(nn.Module):
    """Delegates to a real backbone and records every call's arguments."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone, self.calls = backbone, []

    def forward(self, text_ids, text_masks, image, **kwargs):
        self.calls.append(dict(text_ids=text_ids, image=image, **kwargs))
        return self.backbone(text_ids, text_masks, image, **kwargs)


def _parts(**overrides):
    cfg = tiny_config(**overrides)
    backbone = OneTowerBackbone(cfg).eval()
    return cfg, backbone


# ---------------------------------------------------------------- MAE


def test_patchify_matches_loops():
    images = torch.randn(2, 3, 8, 12)
    out = patchify(images, 4)
    assert out.shape == (2, 6, 48)
    for b in range(2):
        for h in range(2):
            for w in range(3):
                patch = images[b, :, h * 4:(h + 1) * 4, w * 4:(w + 1) * 4]  # (c, p, q)
                assert torch.equal(out[b, h * 3 + w], patch.permute(1, 2, 0).flatten())


def test_mae_loss_matches_hand_computation():
    torch.manual_seed(0)
    images = torch.randn(1, 3, 4, 4)
    pred = torch.randn(1, 4, 12)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    per_patch = []
    for h in range(2):
        for w in range(2):
            pixels = [images[0, c, h * 2 + p, w * 2 + q].item() for p in range(2) for q in range(2) for c in range(3)]
            target = torch.tensor(pixels)
            per_patch.append(target)
    targets = torch.stack(per_patch)  # (4, 12)
    normalised = (targets - targets.mean(-1, keepdim=True)) / (targets.var(-1, keepdim=True) + 1e-6) ** 0.5
    for norm, tgt in ((True, normalised), (False, targets)):
        errors = ((pred[0] - tgt) ** 2).mean(-1)
        expected = (errors[0] + errors[2]) / 2
        torch.testing.assert_close(mae_loss(pred, images, mask, 2, norm_pix_loss=norm), expected)


def test_mae_objective_decodes_the_masked_pass():
    cfg, backbone = _parts()
    decoder = MAEDecoder(cfg, 32, 16, 8)
    batch = make_batch()
    torch.manual_seed(3)
    out = compute_mae(Passes(backbone, batch, mae_on=True, mask_ratio=0.75), decoder, 8)
    torch.manual_seed(3)
    ref = backbone(batch["text_ids"], batch["text_masks"], batch["image"], mask_image=True, mask_ratio=0.75)
    pred = decoder(ref["image_feats"], ref["mae_ids_restore"])
    torch.testing.assert_close(out["pred"], pred)
    assert torch.equal(out["mask"], ref["mae_mask"])
    torch.testing.assert_close(out["loss"], mae_loss(pred, batch["image"], ref["mae_mask"], 8))


# ---------------------------------------------------------------- MLM


def test_mlm_loss_and_accuracy_match_hand_computation():
    _, backbone = _parts()
    head = MLMHead(32, VOCAB, tied_weight=backbone.text_embeddings.word_embeddings.weight)
    batch = make_batch()
    out = compute_mlm(Passes(backbone, batch), head)

    feats = backbone(batch["text_ids_mlm"], batch["text_masks"], batch["image"])["text_feats"]
    logits, labels = [], []
    for i in range(4):
        for j in range(8):
            if batch["text_labels_mlm"][i, j] != -100:
                logits.append(head(feats[i, j]))
                labels.append(batch["text_labels_mlm"][i, j])
    logits, labels = torch.stack(logits), torch.stack(labels)
    torch.testing.assert_close(out["logits"], logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(out["labels"], labels)
    torch.testing.assert_close(out["loss"], F.cross_entropy(logits, labels), atol=1e-5, rtol=1e-5)
    accuracy = (out["logits"].argmax(-1) == out["labels"]).float().mean()
    assert accuracy == (logits.argmax(-1) == labels).float().mean()


def test_mlm_head_is_tied_to_word_embeddings():
    _, backbone = _parts()
    head = MLMHead(32, VOCAB, tied_weight=backbone.text_embeddings.word_embeddings.weight)
    assert head.decoder.weight is backbone.text_embeddings.word_embeddings.weight


def test_mlm_with_no_targets_is_zero_not_nan():
    _, backbone = _parts()
    head = MLMHead(32, VOCAB)
    batch = make_batch()
    batch["text_labels_mlm"] = torch.full_like(batch["text_ids"], -100)
    out = compute_mlm(Passes(backbone, batch), head)
    assert out["loss"].item() == 0.0 and out["labels"].numel() == 0


# ---------------------------------------------------------------- ITM


def test_itm_swaps_half_with_right_labels_and_hand_loss():
    _, backbone = _parts()
    recorder = RecordingBackbone(backbone)
    head = ITMHead(32)
    batch = make_batch(batch_size=8)
    torch.manual_seed(0)
    out = compute_itm(Passes(recorder, batch), head)
    labels = out["labels"]
    assert labels.sum().item() == 4 and labels.shape == (8,)
    (call,) = recorder.calls
    for i in range(8):
        expected = batch["image"][i] if labels[i] == 1 else batch["false_image_0"][i]
        assert torch.equal(call["image"][i], expected)
    assert torch.equal(call["text_ids"], batch["text_ids"]) and not call["mask_image"]
    cls = backbone(batch["text_ids"], batch["text_masks"], call["image"])["cls_feats"]
    torch.testing.assert_close(out["loss"], F.cross_entropy(head(cls), labels))

    torch.manual_seed(0)
    again = compute_itm(Passes(backbone, batch), head)
    assert torch.equal(again["labels"], labels)  # a function of the torch RNG state


# ---------------------------------------------------------------- shared passes


def test_mlm_and_mae_share_one_masked_pass():
    cfg, backbone = _parts()
    recorder = RecordingBackbone(backbone)
    mlm_head = MLMHead(32, VOCAB)
    decoder = MAEDecoder(cfg, 32, 16, 8)
    batch = make_batch()
    passes = Passes(recorder, batch, mlm_on=True, mae_on=True, mask_ratio=0.75)
    compute_mlm(passes, mlm_head)
    compute_mae(passes, decoder, 8)
    compute_itm(passes, ITMHead(32))
    assert len(recorder.calls) == 2
    shared, itm = recorder.calls
    assert torch.equal(shared["text_ids"], batch["text_ids_mlm"]) and shared["mask_image"]
    assert torch.equal(itm["text_ids"], batch["text_ids"]) and not itm["mask_image"]


def test_mlm_alone_uses_the_full_image():
    _, backbone = _parts()
    recorder = RecordingBackbone(backbone)
    passes = Passes(recorder, make_batch(), mlm_on=True, mae_on=False)
    compute_mlm(passes, MLMHead(32, VOCAB))
    (call,) = recorder.calls
    assert not call["mask_image"]
    assert passes.infer(mask_text=True)["image_feats"].shape[1] == 17
    assert len(recorder.calls) == 1  # the repeat came from the cache
