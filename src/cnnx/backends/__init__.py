"""Runners: one interface over every inference backend (see base.py)."""
