"""The training process: `python -m tuneforge.trainer RUN_DIR`."""
