"""Plumbing with no model knowledge: user errors, atomic writes, provenance, timing and memory, torchrun."""
