"""Benchmarks: timing.py (trtexec-compatible statistics) and suite.py (every backend/precision/batch case of
one model, side by side, in one run)."""
