"""The code sandbox. Callers use `api`; `supervisor.py` is a program run by path, not imported."""
