"""The app tier (see conftest.py)."""
