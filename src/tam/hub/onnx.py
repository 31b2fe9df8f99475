"""ONNX export of the fusion model and its head, checked against PyTorch, and an onnxruntime runner.

The graph (`model.onnx`, the legacy TorchScript exporter, opset OPSET) computes FeatureNorm -> fusion -> head:

    inputs   one per modality  x_m [B, T, D_m] float32   (B and T dynamic, T <= model.T)
             valid   [B, T] bool    True = a real segment (False = padding)
             present [B, M] bool    True = the video has modality m (False: a missing audio track)
    outputs  logits [B, K]                       head(f^0) (raw: softmax / de-standardise as PyTorch does)
             segment_logits [B, T, K]            head(f^t) for t = 1..T (only for fusions with d-wide tokens)

`OnnxFusion` runs it in onnxruntime with the interface `tam.infer.timeline.analyse` uses, so `tam predict
--runtime onnx` changes only where the fusion runs; the encoders stay PyTorch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from tam.errors import TamError, first_line

OPSET = 17
TOLERANCE = 1e-4  # max |ONNX - PyTorch| accepted at export
MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit for one file
MISSING = "onnxruntime is not installed: pip install 'tam-affect[onnx]' (or: pip install onnx onnxruntime)"


def has_tokens(model: nn.Module) -> bool:
    """The head reads d-wide inputs, as wide as f^t (CTM, inner, cross; pooled readouts): the graph also gives
    head(f^t), the token timeline."""
    return model.head.fc.in_features == model.fusion.d


class FusionGraph(nn.Module):
    """The traced function: positional inputs (modalities..., valid, present) -> logits (, segment_logits)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.tokens = model, has_tokens(model)

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        *xs, valid, present = args
        fo = self.model.forward_features(dict(zip(self.model.modalities, xs)), valid, present)
        logits = self.model.forward_head(fo.f0)
        return (logits, self.model.forward_head(fo.f[:, 1:])) if self.tokens else (logits,)


def names(model: nn.Module) -> tuple[list[str], list[str]]:
    return list(model.modalities) + ["valid", "present"], ["logits"] + (["segment_logits"] if has_tokens(model) else [])


def example(dims: dict[str, int], B: int, T: int, pad: bool = True, seed: int = 0) -> tuple[Tensor, ...]:
    """Random real-shaped inputs: with `pad`, videos shorter than T (padded) and the last modality missing in
    every third video (its features zero, as the store writes an absent track)."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(B, T, D, generator=g) for D in dims.values()]
    lengths = torch.randint(1, T + 1, (B,), generator=g) if pad else torch.full((B,), T)
    valid = torch.arange(T)[None] < lengths[:, None]
    present = torch.ones(B, len(dims), dtype=torch.bool)
    if pad:
        present[::3, -1] = False
        xs[-1][::3] = 0
    for x in xs:
        x.mul_(valid[..., None])
    return (*xs, valid, present)


def export_onnx(model: nn.Module, dims: dict[str, int], path: Path, T: int) -> dict:
    """Write the graph to `path`, check it on 100 padded videos with missing audio; the config.json entry."""
    model, dims = model.eval(), {m: dims[m] for m in model.modalities}  # the graph's input order
    graph = FusionGraph(model).eval()
    inputs, outputs = names(model)
    axes = {n: {0: "B", 1: "T"} for n in inputs[:-1]} | {"present": {0: "B"}, "logits": {0: "B"},
                                                         "segment_logits": {0: "B", 1: "T"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings on the shape checks and the exporter's deprecation notice
        torch.onnx.export(graph, example(dims, 2, T, pad=False), str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes={k: v for k, v in axes.items() if k in inputs + outputs},
                          opset_version=OPSET, dynamo=False)
    graph.eval()  # the exporter restores the modules' previous modes
    diff = max_difference(model, OnnxFusion(path, list(dims)), dims, T)
    if not diff <= TOLERANCE:
        raise TamError(f"{path}: the ONNX graph differs from PyTorch by {diff:.3g} > {TOLERANCE} on padded videos "
                       "with a missing audio track")
    return {"file": path.name, "opset": OPSET, "inputs": inputs, "outputs": outputs, "max_abs_diff": diff,
            "checked_on": "100 videos, T in 1..model.T (padded), last modality missing in every third"}


@torch.no_grad()
def max_difference(model: nn.Module, runner: OnnxFusion, dims: dict[str, int], T: int, videos: int = 100,
                   batch: int = 10) -> float:
    """max |ONNX - PyTorch| over both outputs on `videos` random videos (padding, missing last modality)."""
    worst, dims = 0.0, {m: dims[m] for m in model.modalities}
    for i in range(0, videos, batch):
        *xs, valid, present = example(dims, batch, T, seed=i + 1)
        x = dict(zip(model.modalities, xs))
        fo = model.forward_features(x, valid, present)
        want = [model.forward_head(fo.f0)] + ([model.forward_head(fo.f[:, 1:])] if runner.tokens else [])
        got = runner.run(x, valid, present)
        worst = max([worst] + [float((a - b).abs().max()) for a, b in zip(want, got)])
    return worst


@dataclass
class _Output:
    """What `analyse` reads from `forward_features`: here the head's outputs already (forward_head is the identity)."""

    f: Tensor
    f0: Tensor
    valid: Tensor


class OnnxFusion:
    """`model.onnx` in onnxruntime (CPU), in the shape of an AffectModel for `tam.infer.timeline.analyse`:
    `forward_features` returns the head's outputs (f0 = logits, f[:, 1:] = segment logits), `forward_head` is
    the identity and calling it gives the logits."""

    def __init__(self, path: str | Path, modalities: list[str], outputs: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise TamError(f"{path}: {MISSING}") from None
        path = Path(path)
        if not path.is_file():
            raise TamError(f"{path}: no ONNX graph; export the model with `tam export RUN_DIR --out DIR --onnx`")
        if path.stat().st_size > MAX_ONNX_BYTES:
            raise TamError(f"{path}: larger than {MAX_ONNX_BYTES} bytes; refusing it")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = torch.get_num_threads()  # as many as PyTorch (`--threads`, set_threads)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for corrupt graphs
            raise TamError(f"{path}: unreadable ONNX graph ({type(e).__name__}: {first_line(e, 120)})") from None
        self.path, self.modalities = path, list(modalities)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.inputs != self.modalities + ["valid", "present"] or self.output_names[:1] != ["logits"]:
            raise TamError(f"{path}: the graph's inputs {self.inputs} / outputs {self.output_names} do not fit a "
                           f"model of modalities {self.modalities}")
        self.tokens = "segment_logits" in self.output_names
        self.head = _Head(outputs or self.session.get_outputs()[0].shape[-1])

    def run(self, x: dict[str, Tensor], valid: Tensor, present: Tensor) -> list[Tensor]:
        """[logits [B, K]] (+ [segment_logits [B, T, K]]) as float32 tensors on the inputs' device."""
        feed = {m: x[m].detach().float().cpu().numpy() for m in self.modalities}
        feed |= {"valid": valid.bool().cpu().numpy(), "present": present.bool().cpu().numpy()}
        return [torch.from_numpy(o).to(valid.device) for o in self.session.run(None, feed)]

    def forward_features(self, x: dict[str, Tensor], valid: Tensor, present: Tensor) -> _Output:
        out = self.run(x, valid, present)
        seg = out[1] if self.tokens else out[0][:, None].expand(-1, valid.shape[1], -1)
        return _Output(f=torch.cat([out[0][:, None], seg], dim=1), f0=out[0], valid=valid)

    def forward_head(self, f0: Tensor) -> Tensor:
        return f0

    def __call__(self, x: dict[str, Tensor], valid: Tensor, present: Tensor) -> Tensor:
        return self.run(x, valid, present)[0]

    def eval(self) -> OnnxFusion:
        return self


@dataclass
class _Head:
    """`analyse` checks the number of outputs against `head.fc.out_features`."""

    out_features: int

    @property
    def fc(self) -> _Head:
        return self


def load_onnx(source: str | Path, meta: dict, model: nn.Module) -> OnnxFusion:
    """The ONNX fusion of a model folder or repo id (`tam.hub.resolve`; run directories have none), refused unless
    it gives `model`'s outputs (the PyTorch model of the same folder) on a few padded videos."""
    from tam.hub.resolve import ONNX, resolve

    kind, folder = resolve(source)
    if kind == "run":
        raise TamError(f"{folder}: a run directory has no ONNX graph; `tam export {folder} --out DIR --onnx`, then "
                       "predict with --model DIR")
    runner = OnnxFusion(folder / ONNX, list(meta["model"]["modalities"]), int(meta["outputs"]))
    if runner.tokens != has_tokens(model):
        raise TamError(f"{runner.path}: the graph's outputs {runner.output_names} do not fit {folder / 'config.json'}")
    device = next(model.parameters()).device
    try:
        diff = max_difference(model.cpu(), runner, meta["dims"], int(meta["model"]["T"]), videos=4, batch=2)
    except Exception as e:  # noqa: BLE001 - onnxruntime's own errors for a graph of other shapes
        raise TamError(f"{runner.path}: the graph does not run on this model's inputs ({type(e).__name__}: "
                       f"{first_line(e, 100)})") from None
    finally:
        model.to(device)
    if not diff <= TOLERANCE:
        raise TamError(f"{runner.path}: the graph differs from model.safetensors by {diff:.3g} (> {TOLERANCE}); it "
                       "belongs to another model")
    return runner
