"""Metrics and plots of trained models."""
