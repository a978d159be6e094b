"""Use cases over storage, vision and training: enrol, identify, retrain, delete."""
