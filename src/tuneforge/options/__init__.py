"""The options registry, the dataloader schema and the run-folder contract (torch-free)."""
