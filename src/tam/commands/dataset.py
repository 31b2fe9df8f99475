"""`tam dataset ...`: turn each dataset's own files into the engine's labels CSVs; import feature tables."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

HELP = "Convert dataset split/label files into labels CSVs, draw seeded splits, import clip-level feature tables."
EXAMPLES = """\
  tam dataset splits ve8 --root data/VideoEmotion8 --out data/ve8/splits          # 10 seeded 2/3-1/3 splits
  tam dataset ve8 --train trainlist01.txt --test testlist01.txt --class-index classInd.txt --out data/ve8/lists
  tam dataset ve8-workbook --xlsx splits.xlsx --root data/VideoEmotion8 --out data/ve8/workbook
  tam dataset yf6 --train yf6_train.txt --test yf6_test.txt --out data/yf6
  tam dataset mediaeval2015 --labels ACCEDEaffect.txt --dev shots-devset-nl.txt --test shots-testset-nl.txt \\
      --out data/me15
  tam dataset mediaeval2016 --ranking ACCEDEranking.txt --test-truth MEDIAEVAL16-Global_prediction.txt --out data/me16
  tam dataset liris --ranking ACCEDEranking.txt --sets ACCEDEsets.txt --out data/liris
  tam dataset custom --csv mine.csv --root videos/ --out data/mine
  tam dataset import-features features.tsv --groups groups.yaml --store data/me16/table_store
  tam dataset check data/ve8/splits/ve8_split01.csv --store data/ve8/features"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("splits", help="draw seeded class-balanced train/test splits and write split files")
    p.add_argument("dataset", choices=["ve8", "custom"])
    p.add_argument("--root", help="VE-8 root (<root>/<Class>/<video>)")
    p.add_argument("--csv", help="custom labels CSV (classification) to split")
    p.add_argument("--n", type=int, default=10, help="number of splits (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-fraction", type=float, default=2 / 3)
    _lists(sub.add_parser("ve8", help="VE-8 split lists in the common format -> labels CSV"))
    p = sub.add_parser("ve8-workbook", help="VE-8's workbook of splits (sheet per split, C train, D test)")
    p.add_argument("--xlsx", required=True)
    p.add_argument("--root", help="VE-8 root, to find the class folder of bare names")
    _lists(sub.add_parser("yf6", help="YF-6 public split lists (`anger/1000 1`) -> labels CSV"))
    p = sub.add_parser("mediaeval2015", help="MediaEval 2015 (valence and arousal classes) -> two labels CSVs")
    p.add_argument("--labels", required=True, help="id name valenceClass arousalClass")
    p.add_argument("--dev", required=True, help="shots-devset-nl.txt")
    p.add_argument("--test", required=True, help="shots-testset-nl.txt")
    p = sub.add_parser("mediaeval2016", help="MediaEval 2016 regression: ranked clips train, global truth test")
    p.add_argument("--ranking", required=True, help="ACCEDEranking.txt")
    p.add_argument("--test-truth", required=True, help="MEDIAEVAL16-Global_prediction.txt")
    p = sub.add_parser("liris", help="LIRIS-ACCEDE's own sets (regression on valence/arousal values)")
    p.add_argument("--ranking", required=True, help="ACCEDEranking.txt")
    p.add_argument("--sets", required=True, help="ACCEDEsets.txt")
    p = sub.add_parser("custom", help="your CSV: video or path, label or valence,arousal, optional split")
    p.add_argument("--csv", required=True)
    p.add_argument("--root", help="dataset root: paths are turned into ids relative to it")
    p.add_argument("--name", default="custom", help="output file name stem (default custom)")
    for name in ("splits", "ve8", "ve8-workbook", "yf6", "mediaeval2015", "mediaeval2016", "liris", "custom"):
        sub.choices[name].add_argument("--out", required=True, help="output folder for the labels CSVs")
    p = sub.add_parser("import-features", help="clip-level feature table -> feature store (T = 1)")
    p.add_argument("table", help="tab-separated `id name f1 f2 ...` (header optional)")
    p.add_argument("--groups", required=True, help="YAML: modality name -> columns (see docs/datasets.md)")
    p.add_argument("--store", required=True, help="feature store folder (created or resumed)")
    p.add_argument("--overwrite", action="store_true", help="rewrite clips already in the store")
    p = sub.add_parser("check", help="count the videos of a labels CSV that are missing from a feature store")
    p.add_argument("labels")
    p.add_argument("--store", required=True)


def _lists(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", required=True, help="train list (`Class/name label`)")
    p.add_argument("--test", required=True, help="test list (`Class/name [label]`)")
    p.add_argument("--class-index", help="classInd.txt (`k ClassName`); default: the dataset's class order")


def run(args: argparse.Namespace) -> int:
    from tam.datasets import cliptable, custom, liris, ve8, yf6

    out = Path(getattr(args, "out", ".") or ".")
    a = args.action
    if a == "splits":
        return _splits(args, out)
    if a == "ve8":
        nn = re.findall(r"\d+", Path(args.train).stem)
        return _write(out / f"ve8_split{int(nn[-1]) if nn else 1:02d}.csv",
                      ve8.from_lists(args.train, args.test, args.class_index))
    if a == "ve8-workbook":
        for k, labels in enumerate(ve8.read_workbook(args.xlsx, args.root), 1):
            _write(out / f"ve8_split{k:02d}.csv", labels)
        return 0
    if a == "yf6":
        return _write(out / "yf6_public.csv", yf6.from_lists(args.train, args.test, args.class_index))
    if a == "mediaeval2015":
        for task, labels in liris.mediaeval2015(args.labels, args.dev, args.test).items():
            _write(out / f"mediaeval2015_{task}.csv", labels)
        return 0
    if a == "mediaeval2016":
        return _write(out / "mediaeval2016.csv", liris.mediaeval2016(args.ranking, args.test_truth))
    if a == "liris":
        return _write(out / "liris_accede.csv", liris.liris_accede(args.ranking, args.sets))
    if a == "custom":
        return _write(out / f"{args.name}.csv", custom.read_custom(args.csv, args.root))
    if a == "import-features":
        return _import(cliptable, args)
    return _check(args)


def _write(path: Path, labels) -> int:
    from tam.datasets.common import summary_table, write_labels_csv

    changed = write_labels_csv(path, labels)
    print(f"{path}: {'written' if changed else 'unchanged'} ({len(labels.rows)} videos, {labels.task})")
    print(summary_table(labels))
    for note in labels.notes:
        print(f"note: {note}")
    return 0


def _splits(args: argparse.Namespace, out: Path) -> int:
    from tam.datasets import custom, ve8
    from tam.errors import TamError
    from tam.eval.protocols import stratified_splits, write_split_set

    if args.dataset == "ve8":
        if not args.root:
            raise TamError("tam dataset splits ve8 needs --root (the folder holding the class folders)")
        paths = ve8.make_splits(args.root, out, args.n, args.seed, args.train_fraction)
    else:
        if not args.csv:
            raise TamError("tam dataset splits custom needs --csv")
        labels = custom.read_custom(args.csv)
        if labels.task != "classification":
            raise TamError(f"{args.csv}: stratified splits need class labels, got {labels.task}")
        items = [(r.video, r.label) for r in labels.rows]
        splits = stratified_splits(items, args.n, args.train_fraction, args.seed)
        meta = {"dataset": "custom", "source": str(args.csv), "seed": args.seed, "train_fraction": args.train_fraction}
        paths = write_split_set(out, Path(args.csv).stem, labels.classes, items, splits, meta)
    print(f"{len(paths)} split(s) under {out} (seed {args.seed}, train fraction {args.train_fraction:.4f}): "
          f"{paths[0].name} .. {paths[-1].name}, list files and splits.json")
    return 0


def _import(cliptable, args: argparse.Namespace) -> int:
    rep = cliptable.import_table(args.table, args.groups, args.store, overwrite=args.overwrite, progress=True)
    print(f"{args.store}: {rep.written} clip(s) written, {rep.present} already present, {len(rep.skipped)} skipped")
    for vid, why in rep.skipped[:20]:
        print(f"  skipped {vid}: {why}")
    if len(rep.skipped) > 20:
        print(f"  ... and {len(rep.skipped) - 20} more")
    return 0


def _check(args: argparse.Namespace) -> int:
    from tam.datasets.common import read_labels_csv
    from tam.features.store import FeatureStore

    labels = read_labels_csv(args.labels)
    store = FeatureStore.open(args.store)
    missing = [r for r in labels.rows if not store.has(r.video)]
    for split in ("train", "val", "test"):
        rows = [r for r in labels.rows if r.split == split]
        gone = [r for r in missing if r.split == split]
        print(f"{split:>5}: {len(rows) - len(gone)} of {len(rows)} videos in the store")
    for r in missing[:20]:
        print(f"  missing: {r.video} ({r.split})")
    if len(missing) > 20:
        print(f"  ... and {len(missing) - 20} more")
    return 0 if not missing else 1
