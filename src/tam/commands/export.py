"""`tam export`: a trained run directory -> a model folder for the Hugging Face Hub (config, weights, card, ONNX)."""

HELP = "export a trained run as a shareable model folder (config.json, model.safetensors, model card, optional ONNX)"
EXAMPLES = """\
  tam export runs/ve8-ctm-s01 --out models/ve8-ctm --license apache-2.0
  tam export runs/ve8-ctm-s01 --out models/ve8-ctm --onnx          # + model.onnx, checked against PyTorch
  tam export runs/ve8-ctm-s01 --out models/ve8-ctm --push my-lab/ve8-ctm   # upload (needs `hf auth login`)
  tam predict a.mp4 --model models/ve8-ctm        # or --model my-lab/ve8-ctm; see docs/sharing.md
"""


def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished `tam train` run (best.safetensors, results.json)")
    p.add_argument("--out", required=True, help="the model folder to write")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx (fusion + head; needs onnx, onnxruntime)")
    p.add_argument("--license", default="other", help="the card's license (a Hub license id, default other)")
    p.add_argument("--dataset", default="", help="the card's dataset name (default: the labels file's folder)")
    p.add_argument("--push", default="", metavar="REPO", help="then upload the folder to this Hub repo (ORG/NAME)")
    p.add_argument("--private", action="store_true", help="with --push: create the repo private")


def run(args) -> int:
    from tam.hub.export import export_run, push

    config = export_run(args.run_dir, args.out, license=args.license, dataset=args.dataset, onnx=args.onnx)
    print(f"wrote {args.out}: config.json, model.safetensors, README.md" + (", model.onnx" if args.onnx else ""))
    if args.onnx:
        print(f"ONNX fusion checked against PyTorch: max |difference| {config['onnx']['max_abs_diff']:.2g} "
              f"({config['onnx']['checked_on']})")
    if args.push:
        print(f"pushed: {push(args.out, args.push, args.private)}")
    return 0
