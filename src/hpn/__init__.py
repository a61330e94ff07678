"""Hyperspherical Prototype Networks."""

__version__ = "0.1.0"
