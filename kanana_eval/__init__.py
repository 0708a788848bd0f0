"""kanana-eval: reproduce the Kanana README's benchmark tables from a model checkpoint."""

__version__ = "0.1.0"
