"""Measure faceforge on a folder of photos: enrol some, probe the rest, score unknown people."""
