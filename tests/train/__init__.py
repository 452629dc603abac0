"""Tests of distill/train/."""
