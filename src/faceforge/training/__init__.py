"""Pure training: embeddings and labels in, a calibrated open-set recognition head out."""
