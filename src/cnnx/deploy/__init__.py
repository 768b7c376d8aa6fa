"""Deployment targets for exported artifacts (Triton model repository: triton.py)."""
