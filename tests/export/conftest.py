# The export tests train versions like the service tests do: same per-test housekeeping.
from tests.api.conftest import _device_backbones_converted, _drop_model_files

__all__ = ["_device_backbones_converted", "_drop_model_files"]
