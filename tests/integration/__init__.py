"""Slow runs across stages: the quickstart end to end, the first stages with real models,
the review loop, an API teacher through the pipeline, and the built wheel."""
