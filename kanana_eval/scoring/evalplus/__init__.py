"""evalplus."""
