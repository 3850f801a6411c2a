"""data_prep writers: real samples in ../shared/data and tiny layouts generated here."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data_prep import common  # noqa: E402
from data_prep import write_coco_karpathy, write_conceptual_caption, write_f30k_karpathy  # noqa: E402
from data_prep import write_nlvr2, write_sbu, write_vg, write_vqa  # noqa: E402
from data_prep.common import CAPTION_SCHEMA, DataPrepError, check_image_bytes  # noqa: E402
from data_prep.write_vqa import normalize_answer, rest_val_count, soft_score  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def shared(name: str) -> Path:
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"real sample data {path} not found (tests read ../shared/data relative to the repo root)")
    return path


def table(path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def record_batches(path) -> int:
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).num_record_batches


def decodes(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return True


def save_image(path: Path, rgb=(200, 30, 30), fmt="JPEG", size=(24, 16)) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path, format=fmt)
    return path.read_bytes()


def truncated_jpeg(path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 6 // 10])


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def skipped_names(summary) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in summary.skipped}


# --------------------------------------------------------------------------- COCO
def test_coco_karpathy_sample_matches_json(tmp_path):
    coco = shared("coco")
    summary = write_coco_karpathy.make_arrow(coco, tmp_path, progress=False)
    entries = json.loads((coco / "karpathy/dataset_coco.json").read_text())["images"]
    assert summary.skipped == [] and summary.images == len(entries)
    for split in ("train", "restval", "val", "test"):
        expected = [e for e in entries if e["split"] == split]
        t = table(tmp_path / f"coco_caption_karpathy_{split}.arrow")
        assert t.schema.equals(CAPTION_SCHEMA)
        assert t.num_rows == len(expected) == summary.files[f"coco_caption_karpathy_{split}.arrow"]
        assert t["image_id"].to_pylist() == [e["filename"] for e in expected]
        assert t["caption"].to_pylist() == [[s["raw"] for s in e["sentences"]] for e in expected]
        assert set(t["split"].to_pylist()) == {split}
        first = expected[0]
        assert t["image"][0].as_py() == (coco / first["filepath"] / first["filename"]).read_bytes()
        assert decodes(t["image"][-1].as_py())
    names = [f"coco_caption_karpathy_{s}.arrow" for s in ("train", "restval", "val", "test")]
    assert sorted(os.listdir(tmp_path)) == sorted(names)


def test_coco_official_layout_maps_train_and_val(tmp_path):
    coco = shared("coco")
    summary = write_coco_karpathy.make_arrow(coco, tmp_path / "a", layout="official", progress=False)
    for split in ("train", "val"):
        data = json.loads((coco / f"annotations/captions_{split}2017.json").read_text())
        grouped = defaultdict(list)
        for ann in data["annotations"]:
            grouped[ann["image_id"]].append(ann["caption"])
        t = table(tmp_path / "a" / f"coco_caption_karpathy_{split}.arrow")
        assert t.num_rows == len(data["images"])
        by_name = dict(zip(t["image_id"].to_pylist(), t["caption"].to_pylist()))
        assert by_name == {img["file_name"]: grouped[img["id"]] for img in data["images"]}
    for split in ("restval", "test"):
        assert table(tmp_path / "a" / f"coco_caption_karpathy_{split}.arrow").num_rows == 0
    assert any("written empty" in n for n in summary.notes)

    write_coco_karpathy.make_arrow(
        coco, tmp_path / "b", layout="official", official_splits="train:train,val:val,val:test", progress=False
    )
    assert table(tmp_path / "b" / "coco_caption_karpathy_test.arrow").num_rows == 159


def test_coco_auto_layout_without_karpathy_json_uses_official(tmp_path):
    coco = shared("coco")
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("annotations", "train2017", "val2017"):
        (raw / name).symlink_to(coco / name)
    summary = write_coco_karpathy.make_arrow(raw, tmp_path / "out", progress=False)
    assert summary.dataset.startswith("coco (official")
    assert summary.files["coco_caption_karpathy_val.arrow"] == 159
    with pytest.raises(DataPrepError, match="karpathy/dataset_coco.json"):
        write_coco_karpathy.make_arrow(raw, tmp_path / "out2", layout="karpathy", progress=False)


def test_writer_flushes_record_batches(tmp_path):
    write_coco_karpathy.make_arrow(shared("coco"), tmp_path, rows_per_batch=16, progress=False)
    assert record_batches(tmp_path / "coco_caption_karpathy_train.arrow") == 5  # 80 rows / 16


def test_exception_mid_write_leaves_no_arrow_and_no_temp_file(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    old = out / "coco_caption_karpathy_train.arrow"
    old.write_bytes(b"previous run")
    calls = {"n": 0}
    real_read = common.read_image

    def failing_read(path, check="decode"):
        calls["n"] += 1
        if calls["n"] > 90:  # train (80 rows, flushed in batches of 4) is done, restval is half way
            raise RuntimeError("disk on fire")
        return real_read(path, check)

    monkeypatch.setattr(common, "read_image", failing_read)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_coco_karpathy.make_arrow(shared("coco"), out, rows_per_batch=4, progress=False)
    assert os.listdir(out) == [old.name] and old.read_bytes() == b"previous run"


# --------------------------------------------------------------------------- F30K (generated layout)
def f30k_layout(root: Path) -> dict[str, bytes]:
    """Six images: four good ones, a corrupt one, a truncated JPEG, and one named in the JSON but absent."""
    images = root / "flickr30k-images"
    good = {f"{i}.jpg": save_image(images / f"{i}.jpg", (40 * i, 100, 50)) for i in range(4)}
    (images / "corrupt.jpg").write_bytes(b"this is not an image")
    truncated_jpeg(images / "truncated.jpg")
    plan = [("0.jpg", "train"), ("corrupt.jpg", "train"), ("1.jpg", "train"), ("missing.jpg", "val"),
            ("2.jpg", "val"), ("truncated.jpg", "test"), ("3.jpg", "test")]
    entries = [
        {"filename": name, "split": split, "imgid": i,
         "sentences": [{"raw": f"caption {k} of {name}", "tokens": []} for k in range(2)]}
        for i, (name, split) in enumerate(plan)
    ]
    write_json(root / "karpathy/dataset_flickr30k.json", {"images": entries, "dataset": "flickr30k"})
    return good


def test_f30k_skips_and_reports_bad_images_never_replaces(tmp_path):
    good = f30k_layout(tmp_path / "raw")
    summary = write_f30k_karpathy.make_arrow(tmp_path / "raw", tmp_path / "out", progress=False)
    expected = {"train": ["0.jpg", "1.jpg"], "val": ["2.jpg"], "test": ["3.jpg"]}
    for split, names in expected.items():
        t = table(tmp_path / "out" / f"f30k_caption_karpathy_{split}.arrow")
        assert t["image_id"].to_pylist() == names
        assert [b.as_py() for b in t["image"]] == [good[n] for n in names]
        assert t["caption"].to_pylist() == [[f"caption {k} of {n}" for k in range(2)] for n in names]
    reasons = skipped_names(summary)
    assert set(reasons) == {"corrupt.jpg", "missing.jpg", "truncated.jpg"}
    assert reasons["missing.jpg"] == "missing file"
    assert reasons["corrupt.jpg"].startswith("cannot decode image")
    assert "truncated" in reasons["truncated.jpg"]
    text = summary.format()
    assert "skipped: 3" in text and "missing.jpg" in text and "corrupt.jpg" in text
    assert summary.rows == 4 and summary.texts == 8


def test_image_checks():
    pixels = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    data = buffer.getvalue()
    assert check_image_bytes(data) is None
    assert check_image_bytes(data[: len(data) // 2]) is not None  # decode catches truncation
    assert check_image_bytes(b"") == "empty file"
    assert check_image_bytes(b"junk", "none") is None
    with pytest.raises(DataPrepError, match="image_check"):
        common.WriterOptions(image_check="maybe")


# --------------------------------------------------------------------------- VQAv2
def test_normalize_answer_and_soft_score():
    cases = {
        "Two": "2", "the dog": "dog", "A Dog.": "dog", "yes!": "yes", "dont": "don't", "isnt": "isn't",
        "its": "its", "walk-in": "walk in", "1,000": "1000", "3.5": "3.5", "an apple": "apple",
        "  Blue\n": "blue", "none": "0", "t-shirt": "t shirt", "well": "well",
    }
    assert {k: normalize_answer(k) for k in cases} == cases
    assert [soft_score(n) for n in range(6)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0]


def test_rest_val_count():
    assert [rest_val_count(n, 1000) for n in (0, 1, 2, 5, 5000)] == [0, 0, 1, 4, 1000]
    assert rest_val_count(5, 0) == 0 and rest_val_count(10, 3) == 3


def test_vqa_sample_rows_labels_and_scores(tmp_path):
    vqa = shared("vqav2")
    summary = write_vqa.make_arrow(vqa, tmp_path, min_answer_count=1, progress=False)
    labels = json.loads((tmp_path / "vqav2_labels.json").read_text())
    assert labels == ["net", "pitcher", "orange", "no", "yes", "blue", "square"]  # first-seen order, train then val
    questions = json.loads((vqa / "v2_OpenEnded_mscoco_train2014_questions.json").read_text())["questions"]
    train = table(tmp_path / "vqav2_train.arrow").to_pylist()
    assert len(train) == 1 and train[0]["image_id"] == 458752 and train[0]["split"] == "train"
    assert train[0]["question_id"] == [q["question_id"] for q in questions]
    assert train[0]["questions"] == [q["question"] for q in questions]
    assert train[0]["image"] == (vqa / "train2014/COCO_train2014_000000458752.jpg").read_bytes()

    val = table(tmp_path / "vqav2_val.arrow").to_pylist()[0]
    assert val["question_id"] == [341397000, 341397001, 341397002, 341397003]
    # 341397000: "no" from 9 annotators, "yes" from 1.
    assert val["answers"][0] == ["no", "yes"] and val["answer_scores"][0] == [1.0, 0.3]
    assert val["answer_labels"][0] == [labels.index("no"), labels.index("yes")]
    # 341397002: "blue" from 4 annotators; "blue and white", "white", ... are not in the vocabulary.
    assert val["answers"][2] == ["blue"] and val["answer_scores"][2] == [1.0]
    assert table(tmp_path / "vqav2_trainable_val.arrow").num_rows == 1  # one val image: it stays trainable
    assert table(tmp_path / "vqav2_rest_val.arrow").num_rows == 0
    assert not (tmp_path / "vqav2_test.arrow").exists()
    assert any("test2015_questions.json not found" in n for n in summary.notes)


def test_vqa_default_vocabulary_drops_rare_answers(tmp_path):
    vqa = shared("vqav2")
    summary = write_vqa.make_arrow(vqa, tmp_path / "a", progress=False)  # min_answer_count=9: nothing qualifies
    assert json.loads((tmp_path / "a" / "vqav2_labels.json").read_text()) == []
    assert summary.rows == 0 and any("dropped 3 questions" in n for n in summary.notes)
    write_vqa.make_arrow(vqa, tmp_path / "b", keep_unlabelled=True, progress=False)
    val = table(tmp_path / "b" / "vqav2_val.arrow").to_pylist()[0]
    assert len(val["questions"]) == 4 and val["answer_labels"] == [[], [], [], []]


def vqa_layout(root: Path) -> None:
    """Train: image 1; val: images 10, 11 (absent), 12, 13; test/test-dev: image 20."""
    def qa(image_id, k, answer):
        qid = image_id * 100 + k
        question = {"image_id": image_id, "question": f"q{qid}?", "question_id": qid}
        annotation = {"image_id": image_id, "question_id": qid, "multiple_choice_answer": answer,
                      "answers": [{"answer": answer, "answer_id": i + 1} for i in range(10)]}
        return question, annotation

    for split, image_ids in (("train", [1]), ("val", [10, 11, 12, 13])):
        pairs = [qa(i, k, "yes" if k else "two") for i in image_ids for k in range(2)]
        write_json(root / f"v2_OpenEnded_mscoco_{split}2014_questions.json", {"questions": [p[0] for p in pairs]})
        write_json(root / f"annotations/v2_mscoco_{split}2014_annotations.json", {"annotations": [p[1] for p in pairs]})
        for i in image_ids:
            if i != 11:
                save_image(root / f"{split}2014/COCO_{split}2014_{i:012d}.jpg", (i, 50, 50))
    for split in ("test", "test-dev"):
        write_json(root / f"v2_OpenEnded_mscoco_{split}2015_questions.json",
                   {"questions": [{"image_id": 20, "question": "what?", "question_id": 2000}]})
    save_image(root / "test2015/COCO_test2015_000000000020.jpg")


def test_vqa_rest_val_test_splits_and_missing_image(tmp_path):
    vqa_layout(tmp_path / "raw")
    summary = write_vqa.make_arrow(tmp_path / "raw", tmp_path / "out", min_answer_count=1,
                                   rest_val_images=1, rows_per_batch=1, progress=False)
    out = tmp_path / "out"
    assert json.loads((out / "vqav2_labels.json").read_text()) == ["2", "yes"]  # "two" is normalised
    ids = {name: table(out / f"vqav2_{name}.arrow")["image_id"].to_pylist()
           for name in ("train", "val", "trainable_val", "rest_val", "test", "test-dev")}
    assert ids == {"train": [1], "val": [10, 12, 13], "trainable_val": [10, 12], "rest_val": [13],
                   "test": [20], "test-dev": [20]}
    assert record_batches(out / "vqav2_val.arrow") == 3
    assert skipped_names(summary) == {"COCO_val2014_000000000011.jpg": "missing file"}
    test_row = table(out / "vqav2_test-dev.arrow").to_pylist()[0]
    assert test_row["questions"] == ["what?"] and test_row["answers"] == [[]] and test_row["split"] == "test-dev"
    val_row = table(out / "vqav2_rest_val.arrow").to_pylist()[0]
    assert val_row["answer_labels"] == [[0], [1]] and val_row["answer_scores"] == [[1.0], [1.0]]


def test_vqa_missing_annotation_names_the_file(tmp_path):
    vqa_layout(tmp_path)
    (tmp_path / "annotations/v2_mscoco_val2014_annotations.json").unlink()
    with pytest.raises(DataPrepError, match="v2_mscoco_val2014_annotations.json"):
        write_vqa.make_arrow(tmp_path, tmp_path / "out", progress=False)
    assert not any((tmp_path / "out").glob("*.arrow"))


# --------------------------------------------------------------------------- NLVR2
def test_nlvr2_sample_one_row_per_pair(tmp_path):
    nlvr2 = shared("nlvr2")
    summary = write_nlvr2.make_arrow(nlvr2, tmp_path, progress=False)
    assert summary.skipped == []
    for split in ("dev", "test1"):
        examples = [json.loads(line) for line in (nlvr2 / f"{split}.json").read_text().splitlines() if line.strip()]
        pairs = defaultdict(list)
        for e in examples:
            pairs[e["identifier"].rsplit("-", 1)[0]].append(e)
        rows = table(tmp_path / f"nlvr2_{split}.arrow").to_pylist()
        assert [r["identifier"] for r in rows] == list(pairs)
        for row in rows:
            group = pairs[row["identifier"]]
            assert row["questions"] == [e["sentence"] for e in group]
            assert row["answers"] == [e["label"] for e in group] and set(row["answers"]) <= {"True", "False"}
            assert row["identifiers"] == [e["identifier"] for e in group]
            for k in (0, 1):
                assert row[f"image_{k}"] == (nlvr2 / "images" / split / f"{row['identifier']}-img{k}.png").read_bytes()
    assert summary.files == {"nlvr2_dev.arrow": 4, "nlvr2_test1.arrow": 4}
    assert any("train.json not found" in n for n in summary.notes)


def test_nlvr2_train_images_in_subfolders_and_missing_pair(tmp_path):
    raw = tmp_path / "raw"
    examples = [
        {"identifier": "train-1-0-0", "sentence": "s0", "label": "True", "directory": 7},
        {"identifier": "train-1-0-2", "sentence": "s2", "label": "False", "directory": 7},
        {"identifier": "train-2-1-0", "sentence": "s3", "label": "True"},  # no directory: found by search
        {"identifier": "train-3-0-0", "sentence": "s4", "label": "False"},  # img1 missing
    ]
    (raw).mkdir()
    (raw / "train.json").write_text("\n".join(json.dumps(e) for e in examples) + "\n")
    for pair, folder in (("train-1-0", "7"), ("train-2-1", "12"), ("train-3-0", "3")):
        for k in (0, 1):
            if pair == "train-3-0" and k == 1:
                continue
            save_image(raw / "images/train" / folder / f"{pair}-img{k}.png", (k * 200, 20, 20), fmt="PNG")
    summary = write_nlvr2.make_arrow(raw, tmp_path / "out", progress=False)
    rows = table(tmp_path / "out/nlvr2_train.arrow").to_pylist()
    assert [r["identifier"] for r in rows] == ["train-1-0", "train-2-1"]
    assert rows[0]["identifiers"] == ["train-1-0-0", "train-1-0-2"] and rows[0]["answers"] == ["True", "False"]
    assert skipped_names(summary) == {"train-3-0-img1.png": "missing file"}


# --------------------------------------------------------------------------- VG
def test_vg_sample_regions(tmp_path):
    vg = shared("vg")
    summary = write_vg.make_arrow(vg, tmp_path, progress=False)
    entries = json.loads((vg / "region_descriptions.json").read_text())
    rows = table(tmp_path / "vg.arrow").to_pylist()
    assert table(tmp_path / "vg.arrow").column_names == ["image", "caption", "width", "height", "x", "y", "image_id"]
    assert len(rows) == len(entries) == summary.rows and summary.texts == 400
    for row, entry in zip(rows, entries):
        assert row["image_id"] == str(entry["id"])
        assert row["caption"] == [r["phrase"] for r in entry["regions"]]
        for key in ("x", "y", "width", "height"):
            assert row[key] == [r[key] for r in entry["regions"]]
        assert row["image"] == (vg / "images" / f"{entry['id']}.jpg").read_bytes()


def test_vg_release_layout(tmp_path):
    vg = shared("vg")
    raw = tmp_path / "raw"
    (raw / "annotations").mkdir(parents=True)
    (raw / "annotations/region_descriptions.json").symlink_to(vg / "region_descriptions.json")
    (raw / "VG_100K").mkdir()
    (raw / "VG_100K_2").mkdir()
    for i, name in enumerate(sorted(os.listdir(vg / "images"))):
        (raw / ("VG_100K" if i % 2 else "VG_100K_2") / name).symlink_to(vg / "images" / name)
    os.unlink(raw / "VG_100K_2" / "1.jpg")
    summary = write_vg.make_arrow(raw, tmp_path / "out", progress=False)
    assert table(tmp_path / "out/vg.arrow")["image_id"].to_pylist() == ["2", "4", "5"]
    assert [s.reason.split(" (")[0] for s in summary.skipped] == ["missing file"]


# --------------------------------------------------------------------------- SBU / GCC (generated layouts)
def test_sbu_chunks_missing_and_stale_files(tmp_path):
    raw = tmp_path / "raw"
    annot = [[f"http://static.flickr.com/{i}/{i:04d}.jpg", f"sbu caption {i}"] for i in range(5)]
    annot.append({"url": "http://static.flickr.com/9/0009.jpg", "caption": "dict entry"})
    write_json(raw / "annot.json", annot)
    for i in (0, 1, 2, 4, 9):  # 3 is never downloaded
        save_image(raw / "images_train" / f"{i % 2:05d}" / f"{i:04d}.jpg", (i * 20, 0, 0))
    save_image(raw / "images_train/00000/unannotated.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sbu_7.arrow").write_bytes(b"stale chunk from an earlier run")
    summary = write_sbu.make_arrow(raw, out, rows_per_file=2, progress=False)
    assert summary.files == {"sbu_0.arrow": 2, "sbu_1.arrow": 2, "sbu_2.arrow": 1}
    assert sorted(os.listdir(out)) == ["sbu_0.arrow", "sbu_1.arrow", "sbu_2.arrow"]
    rows = [r for k in range(3) for r in table(out / f"sbu_{k}.arrow").to_pylist()]
    assert [r["image_id"] for r in rows] == ["0000.jpg", "0002.jpg", "0004.jpg", "0001.jpg", "0009.jpg"]
    captions = {r["image_id"]: r["caption"] for r in rows}
    assert captions["0002.jpg"] == ["sbu caption 2"] and captions["0009.jpg"] == ["dict entry"]
    assert {r["split"] for r in rows} == {"train"}
    assert skipped_names(summary) == {"0003.jpg": "missing file"}
    assert any("1 files have no caption" in n for n in summary.notes)
    assert any("sbu_7.arrow" in n for n in summary.notes)


def test_conceptual_caption_splits_and_chunks(tmp_path):
    raw = tmp_path / "raw"
    for split, n in (("train", 5), ("val", 2)):
        annot = [[f"images_{split}/0000/{split}{i}.jpg", f"{split} {i}"] for i in range(n)]
        write_json(raw / f"{split}_annot.json", annot)
        for i in range(n):
            save_image(raw / f"images_{split}/0000/{split}{i}.jpg", (i * 40, 10, 10))
    summary = write_conceptual_caption.make_arrow(raw, tmp_path / "out", rows_per_file=3, progress=False)
    assert summary.files == {"conceptual_caption_train_0.arrow": 3, "conceptual_caption_train_1.arrow": 2,
                             "conceptual_caption_val_0.arrow": 2}
    val = table(tmp_path / "out/conceptual_caption_val_0.arrow")
    assert val.schema.equals(CAPTION_SCHEMA)
    assert val["caption"].to_pylist() == [["val 0"], ["val 1"]] and val["split"].to_pylist() == ["val", "val"]
    assert summary.skipped == []


def test_conceptual_caption_without_annotation_explains(tmp_path):
    with pytest.raises(DataPrepError, match="train_annot.json"):
        write_conceptual_caption.make_arrow(tmp_path, tmp_path / "out", progress=False)


# --------------------------------------------------------------------------- command line
def run_script(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


def test_cli_writes_and_prints_summary(tmp_path):
    f30k_layout(tmp_path / "raw")
    listing = tmp_path / "skipped.tsv"
    done = run_script("data_prep/write_f30k_karpathy.py", str(tmp_path / "raw"), str(tmp_path / "out"),
                      "--no_progress", "--rows_per_batch", "1", "--skipped_list", str(listing))
    assert done.returncode == 0, done.stderr
    assert "f30k: wrote 4 rows" in done.stdout and "skipped: 3" in done.stdout and "missing.jpg" in done.stdout
    assert record_batches(tmp_path / "out/f30k_caption_karpathy_train.arrow") == 2
    lines = listing.read_text().splitlines()
    assert len(lines) == 3 and any(line.endswith("missing.jpg\tmissing file") for line in lines)
    failed = run_script("data_prep/write_nlvr2.py", str(tmp_path / "nowhere"), str(tmp_path))
    assert failed.returncode == 2 and "does not exist" in failed.stderr and "Traceback" not in failed.stderr
    no_json = run_script("data_prep/write_vg.py", str(tmp_path / "raw"), str(tmp_path / "vg"))
    assert no_json.returncode == 2 and "region_descriptions.json" in no_json.stderr
