"""Tests of distill/review/."""
