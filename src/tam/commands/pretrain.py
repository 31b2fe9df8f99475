"""`tam pretrain`: TSC pre-training (run), the synthetic acceptance (acceptance) and Tables 3/4 (table)."""

from __future__ import annotations

import argparse

HELP = "TSC pre-training of the fusion module (EWP + ATP), its synthetic acceptance, and Tables 3/4."
EXAMPLES = """\
  tam pretrain run --config configs/pretrain/paper.yaml --store feats/ --corpus corpus/ --run-dir runs/out/pre
  torchrun --nproc_per_node=4 -m tam pretrain run --config configs/pretrain/ewp-only.yaml --run-dir runs/out/e
  tam train --config configs/ve8/ctm-image-motion-audio.yaml --run-dir runs/out/ft \\
      --set train.init_from=runs/out/pre/pretrained.safetensors --set optim.fusion_lr=1e-5 --set optim.epochs=50
  tam pretrain acceptance --out /tmp/acceptance          # pre-trained vs not on the synthetic world, 3 seeds
  tam pretrain table 4 --runs runs/out/table4            # collect Table 4 (markdown)
"""


def _sub(sub, name: str, help: str):
    return sub.add_parser(name, help=help, description=help, epilog="examples:\n" + EXAMPLES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pretrain_command", metavar="SUBCOMMAND", required=True)
    p = _sub(sub, "run", "pre-train on a feature store + comment corpus; writes pretrained.safetensors/.json")
    p.add_argument("--config", help="YAML (sections model/decoder/data/loss/optim/train); defaults = the paper's")
    p.add_argument("--store", help="feature store of the corpus videos (overrides data.store)")
    p.add_argument("--corpus", help="corpus folder from `tam comments prepare` (overrides data.corpus)")
    p.add_argument("--id-map", help="CSV comments_id,video_id pairing corpus ids with store ids (data.id_map)")
    p.add_argument("--run-dir", required=True, help="output folder (resumed if it holds last.pt)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--threads", type=int, help="torch CPU threads (train.threads; default 0 = auto)")
    p.set_defaults(_pretrain_run=_run)
    a = _sub(sub, "acceptance", "synthetic world: fine-tuned accuracy with vs without pre-training, >= 3 seeds")
    a.add_argument("--out", required=True, help="work folder (worlds and run directories; re-runs resume)")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--quick", action="store_true", help="a small, fast version (smoke test; not the acceptance)")
    a.set_defaults(_pretrain_run=_acceptance)
    t = _sub(sub, "table", "collect Table 3 (masking) or Table 4 (tasks) from fine-tuning run folders")
    t.add_argument("number", type=int, choices=[3, 4])
    t.add_argument("--runs", required=True, help="folder holding <row>/<ve8|yf6>/.../results.json")
    t.add_argument("--out", help="also write the markdown here")
    t.set_defaults(_pretrain_run=_table)


def run(args: argparse.Namespace) -> int:
    return args._pretrain_run(args)


def _run(args: argparse.Namespace) -> int:
    from tam.train.pretrain import load_pretrain_config, pretrain

    overrides = list(args.overrides)
    overrides += [f"data.store={args.store}"] if args.store else []
    overrides += [f"data.corpus={args.corpus}"] if args.corpus else []
    overrides += [f"data.id_map={args.id_map}"] if args.id_map else []
    overrides += [f"train.threads={args.threads}"] if args.threads is not None else []
    pretrain(load_pretrain_config(args.config, overrides), args.run_dir)
    return 0


def _acceptance(args: argparse.Namespace) -> int:
    from tam.demo.worlds.pretrain import AcceptanceSpec, acceptance_table, run_acceptance
    from tam.io import write_json, write_text

    spec = AcceptanceSpec(seeds=tuple(args.seeds))
    if args.quick:
        spec = AcceptanceSpec(seeds=tuple(args.seeds), labelled=90, unlabelled=40, d=16, layers=1, heads=2, T=8,
                              decoder_layers=1, pretrain_epochs=1, finetune_epochs=1, workers=1)
    r = run_acceptance(args.out, spec)
    table = acceptance_table(r)
    write_text(f"{args.out}/acceptance.md", table + "\n")
    write_json(f"{args.out}/acceptance.json", r)
    print(table)
    return 0


def _table(args: argparse.Namespace) -> int:
    from tam.io import write_text
    from tam.train.pretrain import collect_table

    md = collect_table(args.number, args.runs)
    if args.out:
        write_text(args.out, md + "\n")
    print(md)
    return 0
