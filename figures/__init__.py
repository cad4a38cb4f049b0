"""Plotting functions: analysis results in, matplotlib figures out. They never save or show."""
