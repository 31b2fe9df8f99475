"""Inference on new videos: the model's own encoders, whole-video predictions, affect timelines and reports.

`predict` (in `tam.infer.pipeline`) is the entry point; `tam.predict` is the same function.
"""


def __getattr__(name: str):
    """Lazy export: `tam.infer.predict` imports the pipeline (and torch) only when asked for."""
    if name in ("predict", "write_outputs", "summary"):
        from tam.infer import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'tam.infer' has no attribute {name!r}")
