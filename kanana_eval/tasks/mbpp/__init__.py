"""The `mbpp` benchmark folder: task.yaml, card.md and the code that owns its data."""
