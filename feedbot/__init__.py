"""feedbot: a research-paper recommendation bot that learns from 👍/👎."""

__version__ = "0.1.0"
