"""The test suite: tests/<package>/test_<module>.py mirrors distill/<package>/<module>.py."""
