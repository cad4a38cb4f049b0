"""Healing a pruned model: the training loop (logit distillation or fine-tuning), checkpoints, the distill pipeline."""
