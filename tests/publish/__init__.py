"""Tests of distill/publish/."""
