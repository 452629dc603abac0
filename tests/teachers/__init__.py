"""Tests of distill/teachers/."""
