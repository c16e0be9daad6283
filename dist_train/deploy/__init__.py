"""Deployment: export to paddle.inference with meta.json, and prediction on raw videos."""
