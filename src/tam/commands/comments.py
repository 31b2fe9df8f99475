"""`tam comments prepare`: danmaku files -> the cleaned, segmented, masked video-TSC corpus."""

from __future__ import annotations

import argparse

from tam.comments.formats import ReadLimits
from tam.engines import add_engine_arguments

HELP = "Time-sync comment corpus: `tam comments prepare` builds it from danmaku files."
EXAMPLES = """\
  tam comments prepare danmaku/ --lexicon 情感词汇本体.xlsx --out corpus/
  tam comments prepare a.xml b.json pb/123/ --lexicon words.txt --durations durations.csv --n 500 --out corpus/
  tam comments prepare danmaku/ --lexicon lex.csv --durations videos/ --masking random20 --workers 2 --out corpus/
  tam comments prepare /shared/danmaku/ --lexicon lex.xlsx --out /shared/corpus/ --engine ray   # docs/scaling.md
"""


PAIR_EXAMPLES = """\
  tam comments pair --corpus corpus/ --store feats/                       # counts; unpaired ids of each side
  tam comments pair --corpus corpus/ --store feats/ --write-id-map ids.csv  # bili/1176840.mp4 <- 1176840.xml
  tam pretrain run --corpus corpus/ --store feats/ --id-map ids.csv --run-dir runs/pre
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="comments_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("prepare", help="parse, segment, score, filter and mask comments into Parquet tables",
                       description=HELP, epilog="examples:\n" + EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="danmaku files or folders (.xml .pb .json .csv .jsonl)")
    p.add_argument("--lexicon", required=True, help="emotion lexicon: DUTIR .xlsx/.csv or a .txt word list")
    p.add_argument("--out", required=True, help="output folder (re-running skips done sources)")
    p.add_argument("--durations", default="",
                   help="CSV video,duration or a folder of video files; default: the last comment's time")
    p.add_argument("--n", type=int, default=8000, help="segments selected per polarity (paper: 8000)")
    p.add_argument("--scorer", choices=("fast", "snownlp"), default="fast", help="comment sentiment scorer")
    p.add_argument("--masking", choices=("emotion", "random10", "random20", "random30"), default="emotion")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of videos in the test split (4:1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--max-file-mb", type=float, default=ReadLimits.max_file_mb,
                   help="refuse (and report) a danmaku file larger than this (MB)")
    p.add_argument("--max-comment-chars", type=int, default=ReadLimits.max_comment_chars,
                   help="drop (and count) comments longer than this before any work")
    p.add_argument("--max-comments", type=int, default=ReadLimits.max_comments,
                   help="comments kept per video and source; the rest are dropped and counted")
    p.add_argument("--no-progress", action="store_true")
    add_engine_arguments(p)
    p.set_defaults(_comments_run=_prepare)
    p = sub.add_parser("pair", help="how many corpus videos have features in a store, with unpaired ids of each side",
                       description="Pair a comment corpus with a feature store by video id (the corpus id is the "
                       "comment file's name, the store id the video file's), as `tam pretrain run` will.",
                       epilog="examples:\n" + PAIR_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="corpus folder from `tam comments prepare`")
    p.add_argument("--store", required=True, help="feature store of the corpus videos (`tam extract`)")
    p.add_argument("--id-map", default="", help="CSV comments_id,video_id for ids that differ")
    p.add_argument("--write-id-map", default="",
                   help="write the suggested map (corpus id = last part of a store id) to this CSV")
    p.set_defaults(_comments_run=_pair)


def run(args: argparse.Namespace) -> int:
    return args._comments_run(args)


def _prepare(args: argparse.Namespace) -> int:
    from tam.comments.corpus import format_summary, prepare_corpus

    if args.engine == "ray":  # the workers import the corpus code while this process reads the lexicon
        from tam.engines import ray_engine

        ray_engine.connect(args.address)
        ray_engine.warm("tam.comments.corpus", "rjieba", "pyarrow")  # rjieba loads its dictionary on import
    stats = prepare_corpus(args.inputs, args.out, args.lexicon, n_per_polarity=args.n, durations=args.durations,
                           scorer=args.scorer, masking=args.masking, workers=args.workers,
                           test_fraction=args.test_fraction, seed=args.seed, progress=not args.no_progress,
                           limits=ReadLimits(args.max_file_mb, args.max_comment_chars, args.max_comments),
                           engine=args.engine, address=args.address)
    print(format_summary(stats))
    print(f"wrote {args.out}/comments.parquet, segments.parquet, vocab.json, stats.json")
    return 1 if stats["sources_failed"] and not stats["comments_written"] else 0


def _pair(args: argparse.Namespace) -> int:
    import csv
    import io

    from tam.comments.pairs import pairing, pairing_text, read_id_map
    from tam.features.store import FeatureStore
    from tam.io import write_text

    given = read_id_map(args.id_map) if args.id_map else {}
    report = pairing(args.corpus, FeatureStore.open(args.store), given)
    print(pairing_text(report, args.corpus, args.store, args.id_map))
    if args.write_id_map:
        rows = {**given, **report["suggested_map"]}
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([("comments_id", "video_id"), *rows.items()])
        write_text(args.write_id_map, buf.getvalue())
        print(f"wrote {args.write_id_map} ({len(rows)} ids); pass it as --id-map")
    return 0 if report["paired"]["train"] else 1
