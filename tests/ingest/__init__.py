"""Tests of distill/ingest/."""
