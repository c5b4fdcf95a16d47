"""Speedup methods acting on the optimization."""
