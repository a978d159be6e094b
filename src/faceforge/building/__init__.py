"""What builds versions (the worker's side): the PyTorch networks and weight converters, the version
builder, the exports per format, the training worker, ``faceforge build`` and the evaluation. May import
``serving``'s vision runtime and services; never imported by them."""
