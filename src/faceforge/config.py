"""Settings: one object, read from the environment with the ``FACEFORGE_`` prefix. No side effects."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DetectorSettings(BaseSettings):
    """MTCNN detection settings (``FACEFORGE_DETECTOR__MIN_FACE_SIZE`` and so on)."""

    min_face_size: int = Field(20, ge=12, description="smallest face side in pixels that is searched for")
    min_usable_face: int = Field(
        40, ge=12, description="faces whose shorter box side is smaller are `face_too_small` for enrolment"
    )
    thresholds: tuple[float, float, float] = Field(
        (0.6, 0.7, 0.8), description="P-Net, R-Net and O-Net face-probability thresholds"
    )
    scale_factor: float = Field(0.709, gt=0.3, lt=0.95, description="image pyramid step")
    max_side: int = Field(
        1280, ge=160, description="photos are downscaled to this longest side before detection"
    )
    min_score: float = Field(
        0.95, ge=0.0, le=1.0, description="faces scoring below are `low_detection_score`"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEFORGE_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path("~/.faceforge"), description="data, weights cache and model versions")
    max_pixels: int = Field(40_000_000, ge=1, description="photos with more pixels are rejected undecoded")
    detector: DetectorSettings = Field(default_factory=lambda: DetectorSettings())
    workers: int = Field(2, ge=1, le=64, description="threads used for batch decode and detection")

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def weights_dir(self) -> Path:
        return self.home / "weights"


def get_settings() -> Settings:
    """Read settings from the environment now (tests construct ``Settings`` directly instead)."""
    return Settings()
