"""Tests of distill/cli/."""
