"""Tests of distill/generate/."""
