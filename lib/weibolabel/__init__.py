"""Cross-validated fine-tuning and sharded batch labeling of Chinese social-media comments."""

__version__ = "0.1.0"
