"""Minitron-style structured pruning: targets and ranking, weight surgery, export, the prune pipeline, search."""
