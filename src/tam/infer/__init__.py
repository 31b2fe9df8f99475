"""Inference on new videos: the model's own encoders, whole-video predictions, affect timelines and reports."""
