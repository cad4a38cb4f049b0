"""What a model is and how to get one: the registry, HF config translation, the architecture adapter, loading."""
