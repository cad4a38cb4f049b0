"""Where a model's capacity lives: hooks, streaming statistics, metrics, layer sensitivity, the analyze pipeline."""
