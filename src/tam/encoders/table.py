"""The encoders `tam extract` can use, in one visible table, and how each is built and run (frozen).

`ENCODERS[name]` says which modality the encoder serves, its feature dim, what it sees and where its weights
come from. `DEFAULTS` are the paper's choices (section 5.2); `TINY` are small variants with the same output
dims for tests and demos (random init only). Building an encoder resolves its weights: a local file or folder
first, then the default hub id / URL; `random_init=True` builds the full architecture from a fixed seed and
the manifest records it, so nothing made with it passes for real features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tam.features.store import Encoder


@dataclass(frozen=True)
class EncoderChoice:
    """One row of the table."""

    modality: str
    dim: int
    family: str  # clip | r3d | vggish | videomae | ast
    arch: str  # the family's architecture key
    preprocessing: str
    weights: str = ""  # default hub id or URL; "" = the user must give a file
    where: str = ""  # where to get the weights (shown when they are missing)
    norm: str = ""  # r3d input normalisation (see tam.encoders.motion.NORMS)
    pretrained: bool = True  # False: a test/demo architecture, random init only
    size: int = 0  # square input size in pixels (video encoders)
    resample: str = ""  # video encoders: the reference's PIL filter (bilinear | bicubic)
    offset: str = ""  # video encoders: the reference's crop offset rule (floor | round), see video_io
    framing: str = ""  # vggish: how log-mel examples map to segments (see tam.encoders.audio)


_PIXELS = ("full-size RGB (PyAV rgb24), display aspect (PIL bicubic to width round(w * SAR)), display rotation; "
           "shorter side to {size} px with PIL {resample}, long side int({size} * long / short); centre crop {size} "
           "at offset {rule}")
_FLOOR, _ROUND = "(side - {size}) // 2", "int(round((side - {size}) / 2))"
_CLIP = ("middle frame of each segment; " + _PIXELS.format(size=224, resample="bicubic", rule=_FLOOR.format(size=224))
         + "; /255, CLIP mean/std")
_R3D = ("16 frames per segment (which ones: the store's segment policy); "
        + _PIXELS.format(size=112, resample="bilinear", rule=_ROUND.format(size=112)) + "; {}")
_R3D_KINETICS = "/255, Kinetics mean (0.4345, 0.4051, 0.3775) / std (0.2768, 0.2713, 0.2737)"
_R3D_ACTIVITYNET = "0..255 minus the ActivityNet mean (114.7748, 107.7354, 99.4750), no std"
_VGGISH = ("16 kHz mono; log-mel 64 bands 125-7500 Hz, 25 ms window, 10 ms hop, log(x + 0.01); "
           "{}")
_VGGISH_REFERENCE = ("0.96 s examples tiled from sample 0 (reference framing); each segment gets the example "
                     "containing its midpoint")
_VGGISH_CENTRED = "one 0.96 s example centred on each segment"
_VIDEOMAE = ("16 frames per segment (which ones: the store's segment policy); "
             + _PIXELS.format(size=224, resample="bilinear", rule=_FLOOR.format(size=224)) + "; /255, the folder's "
             "preprocessor_config.json mean/std, else ImageNet's; mean of the last hidden states (+ fc_norm)")
_AST = ("16 kHz mono; Kaldi log-mel fbank 128 bands 20-8000 Hz, 25 ms window, 10 ms hop; the segment's "
        "frames zero-padded to the model's max_length (1024), normalised (x + 4.2677393) / (2 * 4.5689974); "
        "pooled output")
_HF_WHERE = "pass --{1}-weights FOLDER (saved by transformers' save_pretrained) or the hub id {0} while online"
_R3D_WHERE = ("download {} from the 3D-ResNets-PyTorch model links "
              "(https://github.com/kenshohara/3D-ResNets-PyTorch#pre-trained-models) and pass --motion-weights FILE")
_R3D_OLD_WHERE = ("download {} from the old-models release of 3D-ResNets-PyTorch (the CVPR2018 branch's pre-trained "
                  "models, https://github.com/kenshohara/3D-ResNets-PyTorch/tree/CVPR2018#pre-trained-models; "
                  "linked as the old models from the main README) and pass --motion-weights FILE")
_VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
_VGGISH_WHERE = ("download vggish-10086976.pth from https://github.com/harritaylor/torchvggish/releases and pass "
                 "--audio-weights FILE")
_IMG = {"resample": "bicubic", "offset": "floor"}
_R3D_PIX = {"size": 112, "resample": "bilinear", "offset": "round"}

ENCODERS: dict[str, EncoderChoice] = {
    # image (one frame per segment)
    "clip-vit-b32": EncoderChoice("image", 512, "clip", "vit-b32", _CLIP, "openai/clip-vit-base-patch32",
                                  _HF_WHERE.format("openai/clip-vit-base-patch32", "image"),
                                  size=224, **_IMG),
    "clip-vit-l14": EncoderChoice("image", 768, "clip", "vit-l14", _CLIP, "openai/clip-vit-large-patch14",
                                  _HF_WHERE.format("openai/clip-vit-large-patch14", "image"),
                                  size=224, **_IMG),
    "clip-tiny": EncoderChoice("image", 512, "clip", "tiny", _CLIP, pretrained=False, size=224, **_IMG),
    # motion (16 frames per segment)
    "r3d50": EncoderChoice("motion", 2048, "r3d", "resnet-50", _R3D.format(_R3D_KINETICS), "",
                           _R3D_WHERE.format("r3d50_K_200ep.pth"), "kinetics", **_R3D_PIX),
    "r3d101": EncoderChoice("motion", 2048, "r3d", "resnet-101", _R3D.format(_R3D_KINETICS), "",
                            _R3D_WHERE.format("r3d101_K_200ep.pth"), "kinetics", **_R3D_PIX),
    "resnext101": EncoderChoice("motion", 2048, "r3d", "resnext-101", _R3D.format(_R3D_ACTIVITYNET), "",
                                _R3D_OLD_WHERE.format("resnext-101-kinetics.pth"), "activitynet-mean-255",
                                **_R3D_PIX),
    "r3d-tiny": EncoderChoice("motion", 2048, "r3d", "resnet-tiny", _R3D.format(_R3D_KINETICS),
                              norm="kinetics", pretrained=False, **_R3D_PIX),
    "videomae-base": EncoderChoice("motion", 768, "videomae", "base", _VIDEOMAE,
                                   "MCG-NJU/videomae-base-finetuned-kinetics",
                                   _HF_WHERE.format("MCG-NJU/videomae-base-finetuned-kinetics", "motion"), size=224,
                                   resample="bilinear", offset="floor"),
    # audio (one 0.96 s log-mel example per segment; AST: the segment's audio)
    "vggish": EncoderChoice("audio", 128, "vggish", "vggish", _VGGISH.format(_VGGISH_REFERENCE), _VGGISH_URL,
                            _VGGISH_WHERE, framing="reference"),
    "vggish-centred": EncoderChoice("audio", 128, "vggish", "vggish", _VGGISH.format(_VGGISH_CENTRED), _VGGISH_URL,
                                    _VGGISH_WHERE, framing="centred"),
    "ast-audioset": EncoderChoice("audio", 768, "ast", "base", _AST, "MIT/ast-finetuned-audioset-10-10-0.4593",
                                  _HF_WHERE.format("MIT/ast-finetuned-audioset-10-10-0.4593", "audio")),
}

DEFAULTS = {"image": "clip-vit-b32", "motion": "r3d50", "audio": "vggish"}
TINY = {"image": "clip-tiny", "motion": "r3d-tiny", "audio": "vggish"}


class FrozenEncoder:
    """A built encoder: frozen, eval mode, inference only; `encode` maps a numpy batch to float32 [N, dim]."""

    def __init__(self, name: str, choice: EncoderChoice, model, record: Encoder, device, micro_batch: int,
                 post=None):
        self.name, self.choice, self.record, self.device = name, choice, record, device
        self.model = model.to(device).eval().requires_grad_(False)
        self.post = post.to(device) if post is not None else None
        self.micro_batch = micro_batch
        # VGGish's convolutions on CPU: channels-last (NHWC) weights and inputs take oneDNN's faster kernels (1.3-1.4x
        # at one thread, the same features within 1e-7); the model's flatten orders its output either way
        self.channels_last = choice.family == "vggish" and self.device.type == "cpu"
        if self.channels_last:
            import torch

            self.model.to(memory_format=torch.channels_last)

    @property
    def modality(self) -> str:
        return self.choice.modality

    @property
    def audio_front(self):
        """(wave -> per-video features, (features, times) -> per-segment inputs) for an audio encoder."""
        from functools import partial

        from tam.encoders import ast, audio

        if self.choice.family == "ast":
            return ast.fbank, partial(ast.segment_inputs, max_length=self.model.max_length)
        return audio.log_mel, partial(audio.segment_examples, framing=self.choice.framing or "reference")

    def encode(self, batch: np.ndarray) -> np.ndarray:
        """uint8 frames / clips or float32 log-mel examples, [N, ...] -> float32 [N, dim]."""
        import torch

        outs = []
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16,
                                                    enabled=self.device.type == "cuda"):
            for i in range(0, len(batch), self.micro_batch):
                x = torch.from_numpy(np.ascontiguousarray(batch[i:i + self.micro_batch])).to(self.device)
                outs.append(self._forward(x).float().cpu())
        return torch.cat(outs).numpy() if outs else np.zeros((0, self.record.dim), np.float32)

    def _forward(self, x):
        import torch

        from tam.encoders import audio, image, motion, videomae

        family = self.choice.family
        if family == "clip":
            return image.clip_embed(self.model, image.frames_to_input(x))
        if family == "r3d":
            return self.model.forward_features(motion.clips_to_input(x, self.choice.norm))
        if family == "videomae":
            return self.model(videomae.clips_to_input(x, self.model.mean, self.model.std))
        if family == "ast":
            return self.model(x.float())
        x = audio.examples_to_input(x)
        y = self.model(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)
        return y if self.post is None else self.post(y)


def build_encoder(name: str, weights: str = "", random_init: bool = False, device: str = "cpu", seed: int = 0,
                  pca: str = "", quantize: bool = False) -> FrozenEncoder:
    """Build `ENCODERS[name]`; `weights` is a local path (or hub id / URL) overriding the table's default."""
    import torch

    from tam.errors import TamError

    if name not in ENCODERS:
        raise TamError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}")
    choice = ENCODERS[name]
    if not choice.pretrained and not random_init:
        raise TamError(f"encoder {name} is a test/demo architecture without published weights: use --random-init")
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, digest, post = _BUILDERS[choice.family](name, choice, weights, random_init, pca, quantize)
    prep = choice.preprocessing + (f"; PCA{' + 8-bit quantisation' if quantize else ''}" if post is not None else "")
    record = Encoder(name=name, dim=choice.dim, weights_sha256=digest, preprocessing=prep, random_init=random_init)
    small = dev.type == "cpu"
    micro = {"clip": 32 if small else 256, "r3d": 4 if small else 64, "vggish": 32 if small else 512,
             "videomae": 2 if small else 32, "ast": 2 if small else 64}[choice.family]
    return FrozenEncoder(name, choice, model, record, dev, micro, post)


def _build_clip(name, choice, weights, random_init, pca, quantize):
    from tam.encoders import image
    from tam.encoders.weights import sha256_of

    if random_init:
        return image.random_clip(choice.arch), "", None
    folder = _hf_folder(weights or choice.weights, f"image encoder {name}", choice.where)
    return image.load_clip(str(folder), local=True), sha256_of(folder), None


def _hf_folder(source: str, what: str, where: str):
    """A local `save_pretrained` folder as is; a hub id through the Hugging Face cache (downloaded when online)."""
    from pathlib import Path

    from tam.encoders.weights import hub_problem, weights_error

    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or source.count("/") != 1 or source.startswith((".", "~")) or source.endswith("/"):
        raise weights_error(what, f"{source} is neither a model folder nor a hub id", where)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as e:  # offline, unknown repo, network: many types
        raise weights_error(what, hub_problem(source, e), where) from None


def _build_r3d(name, choice, weights, random_init, pca, quantize):
    from tam.encoders import motion
    from tam.encoders.weights import load_strict, load_torch_state, resolve_file, sha256_of

    model = motion.build_resnet3d(choice.arch)
    if random_init:
        return model, "", None
    path = resolve_file(weights or choice.weights, f"motion encoder {name}", choice.where)
    load_strict(model, motion.checkpoint_state(load_torch_state(path)), path, f"3D {choice.arch}")
    return model, sha256_of(path), None


def _build_vggish(name, choice, weights, random_init, pca, quantize):
    from tam.encoders import audio
    from tam.encoders.weights import load_strict, resolve_file, sha256_of

    model = audio.VGGish()
    post = None
    digest = ""
    if not random_init:
        path = resolve_file(weights or choice.weights, f"audio encoder {name}", choice.where)
        load_strict(model, audio.load_vggish_state(path), path, "VGGish")
        digest = sha256_of(path)
    if pca:
        pca_path = resolve_file(pca, "VGGish PCA", "download vggish_pca_params-970ea276.pth from the torchvggish "
                                                   "releases and pass --audio-pca FILE")
        post = audio.load_pca(pca_path, quantize)
        digest += "+pca:" + sha256_of(pca_path)
    return model, digest, post


def _build_videomae(name, choice, weights, random_init, pca, quantize):
    from tam.encoders import videomae
    from tam.encoders.weights import sha256_of

    if random_init:
        return videomae.random_videomae(), "", None
    folder = _hf_folder(weights or choice.weights, f"motion encoder {name}", choice.where)
    model = videomae.load_videomae(str(folder), local=True)
    _check_hf(model, choice, name, folder, frames=16)
    return model, sha256_of(folder), None


def _build_ast(name, choice, weights, random_init, pca, quantize):
    from tam.encoders import ast
    from tam.encoders.weights import sha256_of

    if random_init:
        return ast.random_ast(), "", None
    folder = _hf_folder(weights or choice.weights, f"audio encoder {name}", choice.where)
    model = ast.load_ast(str(folder), local=True)
    _check_hf(model, choice, name, folder)
    return model, sha256_of(folder), None


def _check_hf(model, choice: EncoderChoice, name: str, folder, frames: int = 0) -> None:
    """A transformers checkpoint must give the table's dim (and the frames and size the decoder delivers)."""
    from tam.errors import TamError

    config = model.backbone.config
    got = {"dim": config.hidden_size, "frames": getattr(config, "num_frames", 0) if frames else 0,
           "size": getattr(config, "image_size", 0) if choice.size else 0}
    want = {"dim": choice.dim, "frames": frames, "size": choice.size}
    if got != want:
        bad = ", ".join(f"{k} {got[k]} (table: {want[k]})" for k in want if got[k] != want[k])
        raise TamError(f"{choice.modality} encoder {name}: {folder} does not fit the table: {bad}")


_BUILDERS = {"clip": _build_clip, "r3d": _build_r3d, "vggish": _build_vggish, "videomae": _build_videomae,
             "ast": _build_ast}
