"""`tam serve`: a trained model as a web service (JSON API + a web page), see docs/serving.md."""

HELP = "serve a trained model over HTTP: upload a video, get its emotion, timeline and words (API + web page)"
EXAMPLES = """\
  tam serve --model runs/ve8 --image-weights clip/ --motion-weights r3d50.pth --audio-weights vggish.pth
  tam serve --model runs/ve8 --port 8080 --workers 2 --queue 32 --state /var/lib/tam-serve
  tam serve --model runs/ve8 --token-file tokens.txt --allow-folder /data/videos --expire-hours 24
  curl -F video=@clip.mp4 http://127.0.0.1:8000/v1/jobs      # -> {"id": ..., "state": "queued", ...}
then open http://127.0.0.1:8000/ in a browser; the API is described at /docs and /openapi.json
"""


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="run directory of `tam train` (or what `tam predict --model` takes)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--state", default="tam-serve", help="folder for jobs, uploads and results (default ./tam-serve)")
    p.add_argument("--workers", type=int, default=1, help="jobs predicted at once (default 1)")
    p.add_argument("--queue", type=int, default=16, help="jobs waiting beyond those running; more get 429 (16)")
    p.add_argument("--max-upload-mb", type=float, default=512.0, help="larger uploads get 413 (default 512)")
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds a job may run (default 600)")
    p.add_argument("--expire-hours", type=float, default=0.0, help="delete finished jobs this old (default 0: keep)")
    p.add_argument("--token-file", default="", help="bearer tokens, one a line: the API then needs one")
    p.add_argument("--allow-folder", default="", help="jobs may name videos or feature stores under this folder")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin (repeatable; default: CORS off)")
    for m in ("image", "motion", "audio"):
        p.add_argument(f"--{m}-weights", default="", help=f"{m} encoder weights (local file/folder)")
    p.add_argument("--audio-pca", default="", help="VGGish PCA parameters, when the model's features used them")
    p.add_argument("--timeline", default="auto", choices=["auto", "token", "occlusion"], help="see `tam predict`")
    p.add_argument("--words", default="", help="a `tam pretrain` run directory: add the predicted viewer words")
    p.add_argument("--vocab", default="", help="with --words: the corpus's vocab.json (default: from its config)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--batch", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = auto: cores // workers")


def run(args) -> int:
    from pathlib import Path

    from tam.errors import TamError

    try:
        import uvicorn

        from tam.serve.app import create_app
    except ImportError as e:
        raise TamError(f"tam serve needs the `serve` extra ({e.name} is missing): pip install 'tam-affect[serve]'") \
            from None
    from tam.infer.pipeline import Predictor
    from tam.serve.options import ServeOptions
    from tam.train.threads import set_threads

    weights = {m: getattr(args, f"{m}_weights") for m in ("image", "motion", "audio") if getattr(args, f"{m}_weights")}
    options = ServeOptions(
        model=args.model, state=Path(args.state), workers=args.workers, queue=args.queue,
        max_upload_mb=args.max_upload_mb, time_limit=args.time_limit, expire_hours=args.expire_hours,
        token_file=args.token_file, allow_folder=args.allow_folder, cors=tuple(args.cors), device=args.device,
        weights=weights, audio_pca=args.audio_pca, timeline=args.timeline, words=args.words, vocab=args.vocab,
        batch=args.batch).check()
    set_threads(args.threads, max(0, args.workers - 1))
    predictor = Predictor(args.model, weights=weights, audio_pca=args.audio_pca, device=args.device,
                          words=args.words, vocab=args.vocab)
    predictor.encoders()  # built now, once: the first job does not pay for them
    print(f"tam serve: {args.model} on http://{args.host}:{args.port}/ (state {options.state})", flush=True)
    uvicorn.run(create_app(options, predictor), host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=5)
    return 0
