"""Tests of distill/evaluate/."""
