"""Rebuild the encoders a trained model's features came from, and refuse anything else.

A model's checkpoint carries the manifest of the feature store it was trained on (`meta["features"]`):
encoder names, dims, weight digests, preprocessing and the segment policy. Prediction builds the same
encoders (weights from the user's local files, or the table's defaults) and compares identities
(`Manifest.identity()`, restricted to the model's modalities) before decoding anything.
"""

from __future__ import annotations

from tam.encoders.table import FrozenEncoder, build_encoder
from tam.encoders.video_io import SegmentPolicy
from tam.errors import TamError
from tam.features.store import Manifest


def model_manifest(meta: dict, where: str) -> Manifest:
    """The feature manifest recorded in a checkpoint's meta (a one-line error when it is missing)."""
    if not meta.get("features"):
        raise TamError(f"{where}: the checkpoint records no feature manifest; cannot tell which encoders it needs")
    return Manifest.from_json(meta["features"])


def identity(manifest: Manifest, modalities: list[str]) -> dict:
    """`Manifest.identity()` of the given modalities only (a model may use a subset of a store's modalities)."""
    full = manifest.identity()
    return {m: tuple(full[m]) for m in modalities if m in full}


def check_identity(have: Manifest, want: Manifest, modalities: list[str], what: str) -> None:
    """Refuse features (or encoders) `have` whose identity differs from the model's `want` on `modalities`."""
    missing = [m for m in modalities if m not in have.encoders]
    if missing:
        raise TamError(f"{what}: no {missing} encoder, but the model needs {modalities}")
    a, b = identity(have, modalities), identity(want, modalities)
    if a != b:
        diff = [m for m in modalities if a[m] != b[m]]
        raise TamError(f"{what}: encoders differ from the model's on {diff}: "
                       + "; ".join(f"{m}: have {a[m]}, model expects {b[m]}" for m in diff))


def segment_policy(segment: str, where: str) -> SegmentPolicy:
    """Parse `SegmentPolicy.describe()` text back into the policy (`SegmentPolicy.parse`, checked by describing it)."""
    policy = SegmentPolicy.parse(segment)
    if policy is None:
        raise TamError(f"{where}: unknown segment policy {segment!r}; extract features with `tam extract` and "
                       "pass --features")
    return policy


def build_model_encoders(manifest: Manifest, modalities: list[str], weights: dict[str, str], device: str,
                         audio_pca: str = "", where: str = "the model") -> dict[str, FrozenEncoder]:
    """Build the encoders named in `manifest` for `modalities` and check their identity against it.

    `weights[m]` overrides where modality m's weights come from (a local file or folder). Encoders recorded
    as random-init are rebuilt from the same seed (their features are NOT real: tests and demos).
    """
    out = {}
    for m in modalities:
        if m not in manifest.encoders:
            raise TamError(f"{where}: the model needs {m} features but its manifest has no {m} encoder")
        rec = manifest.encoders[m]
        extra = {}
        if m == "audio" and "PCA" in rec.preprocessing:
            if not audio_pca:
                raise TamError(f"{where}: the audio features were PCA-whitened; pass --audio-pca "
                               "vggish_pca_params-970ea276.pth")
            extra = {"pca": audio_pca, "quantize": "quantisation" in rec.preprocessing}
        out[m] = build_encoder(rec.name, weights.get(m, ""), rec.random_init, device, **extra)
    built = Manifest(encoders={m: e.record for m, e in out.items()}, segment=manifest.segment)
    check_identity(built, manifest, modalities, f"{where}: the encoders built here")
    return out
