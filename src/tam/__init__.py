"""tam: Temporal-Aware Multimodal affective video content analysis (Pan, Wang and Fang, ACM MM 2022)."""

__version__ = "0.1.0"

MODALITIES = ("image", "motion", "audio")
"""Modality keys, in the paper's order; used everywhere a modality is named."""

PAPER_DIMS = {"image": 512, "motion": 2048, "audio": 128}
"""Feature dims of the paper's encoders (section 5.2): CLIP ViT-B/32, 3D ResNet, VGGish."""


def __getattr__(name: str):
    """Lazy exports (keep `import tam` light): `tam.predict(...)` and `tam.from_pretrained(...)` import torch only
    when called for."""
    if name == "predict":
        from tam.infer.pipeline import predict

        return predict
    if name == "from_pretrained":
        from tam.hub import from_pretrained

        return from_pretrained
    raise AttributeError(f"module 'tam' has no attribute {name!r}")
