"""distill: turn your own documents into a small, fast model of your own."""

__version__ = "0.1.0"
