"""Tests of distill/curate/."""
