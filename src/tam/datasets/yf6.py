"""YouTube/Flickr-EkmanSix (Xu et al.): 6 classes, the public 819/818 train/test split.

The split comes as two lists in the common format (`anger/1000 1`, labels 1–6 in the order of
`CLASSES`); videos are keyed `class/name` as written in the lists (no extension).
"""

from __future__ import annotations

import os

from tam.datasets.common import LabelSet, labels_from_class_lists, read_class_index

CLASSES = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
"""YF-6's classes in the order of its label indices 1..6."""

PUBLIC_SPLIT = {"train": 819, "test": 818}


def from_lists(train: str | os.PathLike, test: str | os.PathLike, class_index: str | os.PathLike | None = None
               ) -> LabelSet:
    """The public split lists -> `LabelSet`; a note is added when the counts differ from 819/818."""
    classes = read_class_index(class_index) if class_index else list(CLASSES)
    labels = labels_from_class_lists(train, test, classes)
    n = labels.count()
    if (n["train"], n["test"]) != (PUBLIC_SPLIT["train"], PUBLIC_SPLIT["test"]):
        labels.notes.append(f"{n['train']}/{n['test']} train/test videos; the public split has 819/818")
    return labels
