"""What a faceforge embedding is, stated without the networks that compute it.

Importable without PyTorch: the API process, the store of versions and the CLI need these facts
(to compare stored embeddings and manifests with this release's) but never run a network in PyTorch.
``building.networks.embedding_net`` builds the networks from the same constants.
"""

from __future__ import annotations

FACENET_DIMENSION = 512
DLIB_DIMENSION = 128
# Chosen on lfw_dev (README, "Recognition"): the best known-accept at every operating point.
# The fused vector is (sqrt(1 - w) facenet, sqrt(w) dlib): cosine = (1 - w) cos_facenet + w cos_dlib.
DLIB_WEIGHT = 0.8
# Stored with every embedding and version: a change of networks or weight re-embeds the photos.
EMBEDDER_NAME = f"facenet-dlib-w{DLIB_WEIGHT}"
EMBEDDING_SIZE = FACENET_DIMENSION + DLIB_DIMENSION
