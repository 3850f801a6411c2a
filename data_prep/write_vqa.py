"""VQAv2 -> ``vqav2_{train,val,trainable_val,rest_val,test,test-dev}.arrow`` + ``vqav2_labels.json``.

Usage: ``python data_prep/write_vqa.py VQAV2_ROOT ARROW_DIR [--min_answer_count 9] [--rest_val_images 1000]``

Reads the official files (in VQAV2_ROOT, ``annotations/`` or ``questions/``):
``v2_OpenEnded_mscoco_{train,val}2014_questions.json`` +
``v2_mscoco_{train,val}2014_annotations.json``, and, when present,
``v2_OpenEnded_mscoco_{test,test-dev}2015_questions.json``; images are
``{train2014,val2014,test2015}/COCO_<folder>_<12-digit id>.jpg`` (also under
``images/``). Test files that are absent are skipped with a note.

As in ViLT, rows are grouped by image: one row per image holding its
questions, question_id, answers, answer_labels and answer_scores as parallel
lists (test rows have empty answer lists per question). Images keep the order
in which the question file first mentions them.

* Answers are normalised (:func:`normalize_answer`). The vocabulary is every
  normalised ``multiple_choice_answer`` seen ``--min_answer_count`` times over
  train+val, in first-seen order (train, then val: ViLT's label order, so its
  VQA heads line up); it is written to ``vqav2_labels.json`` (index = label).
* A question's labels are the vocabulary answers among its 10 normalised
  annotator answers, scored 0.3/0.6/0.9/1.0 for 1/2/3/4+ annotators;
  ``answers`` holds the matching answer strings.
* Questions with no vocabulary answer are dropped from train/val (as ViLT;
  ``--keep_unlabelled`` keeps them), and images left without questions too.
* ``rest_val`` is the last ``--rest_val_images`` val images, ``trainable_val``
  the others, ``val`` all of them; with fewer val images each keeps >= 1
  image when val has >= 2. Their ``split`` column says ``val`` (as in ViLT).
"""
from __future__ import annotations

import functools
import re
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.common import (  # noqa: E402
    DataPrepError,
    StagedOutput,
    WriterOptions,
    WriteSummary,
    build_parser,
    check_root,
    load_json,
    optional_file,
    run_cli,
)

PREFIX = "vqav2"
LABEL_FILE = "vqav2_labels.json"
QUESTION_FILES = {
    "train": "v2_OpenEnded_mscoco_train2014_questions.json",
    "val": "v2_OpenEnded_mscoco_val2014_questions.json",
    "test": "v2_OpenEnded_mscoco_test2015_questions.json",
    "test-dev": "v2_OpenEnded_mscoco_test-dev2015_questions.json",
}
ANNOTATION_FILES = {
    "train": "v2_mscoco_train2014_annotations.json",
    "val": "v2_mscoco_val2014_annotations.json",
}
IMAGE_FOLDERS = {"train": "train2014", "val": "val2014", "test": "test2015", "test-dev": "test2015"}
JSON_DIRS = ("", "annotations", "questions")
IMAGE_PARENTS = ("", "images")

VQA_SCHEMA = pa.schema(
    [
        ("image", pa.binary()),
        ("questions", pa.list_(pa.string())),
        ("answers", pa.list_(pa.list_(pa.string()))),
        ("answer_labels", pa.list_(pa.list_(pa.int64()))),
        ("answer_scores", pa.list_(pa.list_(pa.float64()))),
        ("image_id", pa.int64()),
        ("question_id", pa.list_(pa.int64())),
        ("split", pa.string()),
    ]
)


# --------------------------------------------------------------------------- answer normalisation
_SPACE_OR_DROP = set(';/[]"{}()=+\\_-><@`,?!')
_DIGIT_COMMA = re.compile(r"\d,\d")
_LONE_PERIOD = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
# Canonical contractions; answers often drop some or all apostrophes.
_CONTRACTED = (
    "ain't aren't can't couldn't didn't doesn't don't hadn't hasn't haven't isn't mightn't mustn't "
    "needn't shan't shouldn't wasn't weren't won't wouldn't couldn't've shouldn't've wouldn't've "
    "could've should've would've might've must've i'm i've i'd i'll i'd've you're you've you'd you'll "
    "he's he'd he'll she's she'd she'll it's it'd it'll we're we've we'd we'll they're they've they'd "
    "they'll that's that'll there's there're there'd what's what're what'll where's where'd who's "
    "who'd who'll who've how's how'd let's o'clock y'all ma'am somebody's someone's something's"
).split()
# Apostrophe-free spellings that are ordinary words: leave them alone.
_REAL_WORDS = {"its", "were", "well", "ill", "id", "hell", "shell", "wed", "shed", "lets", "whore", "hed"}


def _contraction_variants() -> dict[str, str]:
    """Every spelling of a contraction with some apostrophes missing -> its canonical form."""
    table = {}
    for canonical in _CONTRACTED:
        pieces = canonical.split("'")
        gaps = len(pieces) - 1
        for keep in range(2**gaps - 1):  # bit i set = keep apostrophe i; all set = canonical itself
            word = pieces[0]
            for i, piece in enumerate(pieces[1:]):
                word += ("'" if keep >> i & 1 else "") + piece
            if word not in _REAL_WORDS:
                table.setdefault(word, canonical)
    return table


_CONTRACTIONS = _contraction_variants()


def _strip_punctuation(text: str) -> str:
    """Drop punctuation that touches a space (or all of it if a number has a thousands comma), else make it a space."""
    drop_all = _DIGIT_COMMA.search(text) is not None
    out = text
    for mark in _SPACE_OR_DROP:
        if mark in out:
            touches_space = f"{mark} " in text or f" {mark}" in text
            out = out.replace(mark, "" if drop_all or touches_space else " ")
    return _LONE_PERIOD.sub("", out)


@functools.lru_cache(maxsize=None)
def normalize_answer(text: str) -> str:
    """VQA-style answer normalisation: punctuation, lowercase, number words -> digits, no articles, contractions."""
    text = _strip_punctuation(text.replace("\n", " ").replace("\t", " ").strip())
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words).replace(",", "")


def soft_score(count: int) -> float:
    """VQA soft score for an answer given by ``count`` of the 10 annotators."""
    return {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9}.get(count, 1.0)


# --------------------------------------------------------------------------- annotations
class Question(NamedTuple):
    question_id: int
    text: str
    answers: list
    labels: list
    scores: list


def find_json(root: Path, name: str) -> Path | None:
    return optional_file(root, [str(Path(d) / name) for d in JSON_DIRS])


def looked_for(root: Path, name: str) -> str:
    return ", ".join(str(root / d / name) for d in JSON_DIRS)


def load_list(path: Path, key: str) -> list:
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataPrepError(f"{path} has no '{key}' list; is it an official VQAv2 file?")
    return data[key]


def build_vocabulary(annotations: dict[str, list], min_count: int) -> list[str]:
    """Normalised multiple-choice answers seen >= ``min_count`` times, in first-seen order."""
    counts = Counter(normalize_answer(a["multiple_choice_answer"]) for anns in annotations.values() for a in anns)
    return [answer for answer, n in counts.items() if n >= min_count]


def targets(annotation: dict, label_of: dict[str, int]) -> tuple[list, list, list]:
    """(answers, labels, soft scores) of one question's vocabulary answers."""
    counts = Counter(normalize_answer(a["answer"]) for a in annotation["answers"])
    kept = [(answer, n) for answer, n in counts.items() if answer in label_of]
    return [a for a, _ in kept], [label_of[a] for a, _ in kept], [soft_score(n) for _, n in kept]


def group_by_image(questions: list, annotations: list | None, label_of: dict, keep_unlabelled: bool):
    """image_id -> [Question], in first-mention order, and the number of dropped unlabelled questions."""
    by_qid = {a["question_id"]: a for a in annotations} if annotations is not None else None
    groups: dict[int, list[Question]] = {}
    dropped = 0
    for q in questions:
        answers = labels = scores = []
        if by_qid is not None:
            annotation = by_qid.get(q["question_id"])
            if annotation is None:
                raise DataPrepError(
                    f"question {q['question_id']} has no annotation; do the question and annotation files match?"
                )
            answers, labels, scores = targets(annotation, label_of)
            if not labels and not keep_unlabelled:
                dropped += 1
                continue
        groups.setdefault(q["image_id"], []).append(Question(q["question_id"], q["question"], answers, labels, scores))
    return groups, dropped


def rest_val_count(n_images: int, requested: int) -> int:
    """How many of the last val images go to rest_val (each side keeps >= 1 when there are >= 2)."""
    if requested <= 0 or n_images < 2:
        return 0
    return max(1, min(requested, n_images - 1))


# --------------------------------------------------------------------------- writing
def image_path(root: Path, split: str, image_id: int) -> Path:
    folder = IMAGE_FOLDERS[split]
    name = f"COCO_{folder}_{image_id:012d}.jpg"
    for parent in IMAGE_PARENTS:
        path = root / parent / folder / name
        if path.is_file():
            return path
    return root / folder / name


def image_row(data: bytes, image_id: int, questions: list[Question], split: str) -> dict:
    return {
        "image": data,
        "questions": [q.text for q in questions],
        "answers": [q.answers for q in questions],
        "answer_labels": [q.labels for q in questions],
        "answer_scores": [q.scores for q in questions],
        "image_id": int(image_id),
        "question_id": [q.question_id for q in questions],
        "split": split,
    }


def write_groups(root, stage, split, groups, outputs: dict[str, set | None], summary, opts) -> None:
    """Stream one row per image of ``groups`` into each output file whose image set holds it (None = all)."""
    writers = {name: stage.writer(f"{name}.arrow", VQA_SCHEMA, opts.rows_per_batch) for name in outputs}
    rows = dict.fromkeys(outputs, 0)
    for image_id, questions in opts.bar(groups.items(), total=len(groups), desc=f"{PREFIX}_{split}"):
        data = opts.read(image_path(root, split, image_id), summary)
        if data is None:
            continue
        summary.images += 1
        summary.texts += len(questions)
        for name, members in outputs.items():
            if members is None or image_id in members:
                writers[name].write_row(image_row(data, image_id, questions, split))
                rows[name] += 1
    for name, writer in writers.items():
        writer.close()
        summary.files[f"{name}.arrow"] = rows[name]


def split_outputs(split: str, groups: dict, rest_val_images: int) -> dict[str, set | None]:
    """Output file -> the image ids it takes (None = all) for one source split."""
    if split != "val":
        return {f"{PREFIX}_{split}": None}
    ids = list(groups)
    n_rest = rest_val_count(len(ids), rest_val_images)
    cut = len(ids) - n_rest
    return {f"{PREFIX}_val": None, f"{PREFIX}_trainable_val": set(ids[:cut]), f"{PREFIX}_rest_val": set(ids[cut:])}


def load_sources(root: Path, summary: WriteSummary) -> tuple[dict, dict]:
    """Question lists per split and annotation lists for train/val, for the files that exist."""
    questions, annotations = {}, {}
    for split in ("train", "val"):
        q_path, a_path = find_json(root, QUESTION_FILES[split]), find_json(root, ANNOTATION_FILES[split])
        if q_path is None and a_path is None:
            summary.note(f"no {split} question/annotation files found: no {split} files written")
            continue
        if q_path is None or a_path is None:
            missing = QUESTION_FILES[split] if q_path is None else ANNOTATION_FILES[split]
            raise DataPrepError(
                f"{split}: {missing} not found (looked for {looked_for(root, missing)}); both files are needed"
            )
        questions[split] = load_list(q_path, "questions")
        annotations[split] = load_list(a_path, "annotations")
    if not annotations:
        names = ", ".join(QUESTION_FILES[s] + " + " + ANNOTATION_FILES[s] for s in ("train", "val"))
        raise DataPrepError(
            f"no VQAv2 train or val files in {root} (or its annotations/, questions/); expected {names}"
        )
    for split in ("test", "test-dev"):
        path = find_json(root, QUESTION_FILES[split])
        if path is None:
            summary.note(f"{QUESTION_FILES[split]} not found: no {PREFIX}_{split}.arrow written")
        else:
            questions[split] = load_list(path, "questions")
    return questions, annotations


def make_arrow(
    root,
    dataset_root,
    *,
    min_answer_count: int = 9,
    rest_val_images: int = 1000,
    keep_unlabelled: bool = False,
    rows_per_batch: int = 256,
    image_check: str = "decode",
    progress: bool = True,
) -> WriteSummary:
    """Write the VQAv2 arrow files and ``vqav2_labels.json``; return the summary."""
    root = check_root(root)
    opts = WriterOptions(rows_per_batch, image_check, progress)
    summary = WriteSummary(PREFIX, str(dataset_root))
    questions, annotations = load_sources(root, summary)
    vocabulary = build_vocabulary(annotations, min_answer_count)
    label_of = {answer: i for i, answer in enumerate(vocabulary)}
    summary.note(f"{len(vocabulary)} answers seen >= {min_answer_count} times -> {LABEL_FILE} (vqav2_label_size)")
    with StagedOutput(dataset_root, PREFIX) as stage:
        for split, split_questions in questions.items():
            groups, dropped = group_by_image(split_questions, annotations.get(split), label_of, keep_unlabelled)
            if dropped:
                summary.note(
                    f"{split}: dropped {dropped} questions without a vocabulary answer (--keep_unlabelled keeps them)"
                )
            write_groups(root, stage, split, groups, split_outputs(split, groups, rest_val_images), summary, opts)
        stage.write_json(LABEL_FILE, vocabulary)
    return summary


def main(argv=None) -> int:
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--min_answer_count", type=int, default=9, help="answers seen fewer times get no label")
    parser.add_argument("--rest_val_images", type=int, default=1000, help="last val images held out as rest_val")
    parser.add_argument("--keep_unlabelled", action="store_true", help="keep questions without a vocabulary answer")
    return run_cli(make_arrow, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
