"""The camera agent (``faceforge watch``): the exported on-device model of the current version on a
video stream, with the app-side contract a phone follows, and its decisions on MQTT.

Data flow, one module per step:

    source (PyAV: file, RTSP, HTTP MJPEG, V4L2) -> detect (MTCNN's ONNX graphs, or BlazeFace)
    -> track (IoU across frames) -> refine, crop, align (``vision.face_input``, the phone's steps)
    -> backbone + head (``runtime``: TFLite or ONNX, files from ``models``) -> decide once per track
    (``tracking``) -> publish (``publish``: MQTT with Home Assistant discovery, and stdout)

Everything here runs without PyTorch, the API or the database (``faceforge[edge]``), so the agent
fits a Raspberry-Pi-class device; ``tests/watch`` reads the agent's memory map to hold that.
"""
