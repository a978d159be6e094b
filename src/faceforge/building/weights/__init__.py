"""Locate registry-shipped weights, convert them once, cache them in our own format."""
