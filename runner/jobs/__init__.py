"""The child side of a run: the frame every job runs in (frame.py)."""
