"""Sharded corpus labeling: corpus chunks, part files and their merge, the summary."""
