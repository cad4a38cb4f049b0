"""Minitron Lab's own offline lm-evaluation-harness tasks: YAML configs whose data files sit beside them."""
