"""Training data: discovery, aspect buckets and crops, caches of latents and text embeddings, epoch plans."""
