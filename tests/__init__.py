"""pez's tests, by tier: unit/, app/, e2e/ (see conftest.py)."""
