"""Speedup methods acting on the model."""
