"""Reports of model quality: plots as PNG and one HTML page (``faceforge build``)."""
