"""Speedup methods acting on the data."""
