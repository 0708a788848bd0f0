"""Needle in a haystack: a generated, bilingual long-context benchmark (see card.md)."""
