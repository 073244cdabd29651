"""Presentation: figures, heatmaps, phrase tables."""
