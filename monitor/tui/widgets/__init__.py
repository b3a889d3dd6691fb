"""The rack view's widgets, one per module."""
