"""Scoring a model on held-out text: next-token loss and perplexity, KL between two models."""
