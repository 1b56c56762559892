"""The fast tier (see conftest.py)."""
