"""Settings: one object, read from the environment with the ``FACEFORGE_`` prefix. No side effects."""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import idna
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from faceforge.core.formats import ExportFormat, parse_formats
from faceforge.core.logs import LogFormat

# The groups below are plain models, read only through ``Settings`` (``FACEFORGE_<GROUP>__<NAME>``): as
# settings classes of their own they also read unprefixed variables (a ``THRESHOLDS`` or ``FORMATS``
# of anyone's environment changed faceforge).


class DetectorSettings(BaseModel):
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

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0.0 < threshold < 1.0 for threshold in value):
            # A probability threshold of 1 or more is never reached: nothing would ever be detected.
            raise ValueError(f"each threshold is a face probability between 0 and 1, not {list(value)}")
        return value


class LimitSettings(BaseModel):
    """Request limits (``FACEFORGE_LIMITS__MAX_FILE_BYTES`` and so on)."""

    max_file_bytes: int = Field(15 * 1024 * 1024, ge=1024, description="largest accepted photo file")
    max_request_bytes: int = Field(100 * 1024 * 1024, ge=1024, description="largest accepted request body")
    max_photos_per_request: int = Field(20, ge=1, description="photos in one registration or upload")
    max_name_length: int = Field(
        200,
        ge=1,
        description="longest name, position or note; the columns stop it at 500 (external ids and "
        "sources at 200)",
    )
    vision_concurrency: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="photos decoded, detected and embedded at once across requests (default: CPU cores)",
    )
    vision_pixels: int = Field(
        100_000_000,
        ge=1,
        description="photo pixels (as in their headers) decoded at once across requests; more wait for a "
        "slot (a larger photo runs alone)",
    )
    vision_queue: int = Field(
        8, ge=0, description="requests that may wait for vision work; more get 503 with Retry-After"
    )


class CompatSettings(BaseModel):
    """The other APIs faceforge speaks (``FACEFORGE_COMPAT__COMPREFACE`` and so on)."""

    compreface: bool = Field(True, description="serve CompreFace's recognition API under /api/v1/recognition")
    deepstack: bool = Field(True, description="serve DeepStack's face API under /v1/vision/face")


class WorkerSettings(BaseModel):
    """The training worker (``FACEFORGE_WORKER__EMBEDDED`` and so on)."""

    embedded: bool = Field(True, description="`serve` runs one training worker as a thread of its process")
    poll_seconds: float = Field(0.5, gt=0, description="how often an idle worker looks for requests")
    heartbeat_seconds: float = Field(1.0, gt=0, description="how often a training worker proves it is alive")
    stale_after_seconds: float = Field(
        30.0,
        gt=0,
        description="a training whose worker has not heart-beaten for this long is no longer shown as "
        "running, and the lease holder takes it over (a worker that has just taken the lease takes "
        "over a running training at once)",
    )
    quiet_seconds: float = Field(
        2.0,
        ge=0,
        description="a training starts once no change has come for this long, so a burst (a dashboard "
        "drop, an import) makes one version; 0 starts at once",
    )
    max_delay_seconds: float = Field(
        30.0, gt=0, description="a training starts at the latest this long after the first change it covers"
    )
    formats: str = Field(
        "onnx,coreml,tflite",
        description="comma-separated formats every version gets; must include onnx (the server's own files)",
    )
    keep_versions: int = Field(
        5, ge=1, description="ready versions kept on disk; older ones are pruned (their files deleted)"
    )
    orphan_grace_seconds: float = Field(
        600.0,
        ge=0,
        description="photo files without a database row are deleted by a starting worker once this old",
    )
    min_known_accept: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a version whose held-out known accept rate is below this is built but not made current",
    )
    pause_before_publish_seconds: float = Field(
        0.0, ge=0, description="fault-injection knob for crash tests: sleep before publishing a version"
    )

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, value: str) -> str:
        parse_formats(value)
        return value

    @property
    def export_formats(self) -> tuple[ExportFormat, ...]:
        return parse_formats(self.formats)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEFORGE_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(Path("~/.faceforge"), description="data, weights cache and model versions")
    weights_cache: Path | None = Field(
        None, description="where converted weights are cached (default: <home>/weights); may be shared"
    )
    max_pixels: int = Field(40_000_000, ge=1, description="photos with more pixels are rejected undecoded")
    decode_pixels: int = Field(
        12_000_000,
        ge=1_000_000,
        description="photos with more pixels are reduced by a whole factor while decoded for analysis",
    )
    detector: DetectorSettings = Field(default_factory=lambda: DetectorSettings())
    workers: int = Field(2, ge=1, le=64, description="threads used for batch decode and detection")
    target_unknown_reject: float = Field(
        0.97,
        ge=0.5,
        lt=1.0,
        description="share of strangers each version's threshold is calibrated to reject",
    )
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL; default: SQLite at <home>/faceforge.db (PostgreSQL: postgresql+psycopg://...)",
    )
    admin_keys: SecretStr = Field(
        SecretStr(""), description="comma-separated API keys that may read and write"
    )
    read_keys: SecretStr = Field(
        SecretStr(""), description="comma-separated API keys that may read, list and identify"
    )
    allowed_hosts: str = Field(
        "",
        description="with FACEFORGE_OPEN_NETWORK_WITHOUT_KEYS: comma-separated host names the server is "
        "reached by (faceforge.lan); IP addresses and localhost always are",
    )
    open_network_without_keys: bool = Field(
        False,
        description="without API keys, answer clients beyond loopback too (anyone on the network may write)",
    )
    cors_origins: str = Field(
        "",
        description="comma-separated origins (https://app.example.com, http://localhost:3000) whose web "
        "pages may call the API from a browser (CORS); * for any page, only with API keys",
    )
    inference_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=64,
        description="threads an API process's networks use for one photo (default: CPU cores)",
    )
    embedder_precision: Literal["auto", "float", "int8"] = Field(
        "auto",
        description="the embedding graph a process runs: float (the reference), int8 (about 3x "
        "faster), or auto: int8 where it is prepared and passes this machine's start-up check",
    )
    idle_poll_ms: float | None = Field(
        None,
        ge=0,
        le=1000,
        allow_inf_nan=False,
        description="when photos come this close together, an API process keeps the machine's idle cores "
        "polling at the lowest priority this long after each one, so that the next does not wait for "
        "halted cores to wake (a VM's come back slowly); 0: never; unset: 200 on a KVM guest with the "
        "haltpoll cpuidle driver and up to 8 cores, else 0. Never under a CPU quota below the cores",
    )
    preload_models: bool = Field(
        False,
        description="load the face detector and embedder when an API process starts (about 300 MB "
        "each) instead of on its first photo",
    )
    client_runtime_dir: Path | None = Field(
        None,
        description="ONNX Runtime Web's dist folder for the browser client (default: the npm package "
        "`make install` puts in client/node_modules beside the sources)",
    )
    log_format: LogFormat = Field(LogFormat.TEXT, description="text, or json: one JSON object per line")
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    worker: WorkerSettings = Field(default_factory=lambda: WorkerSettings())
    compat: CompatSettings = Field(default_factory=lambda: CompatSettings())

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("database_url")
    @classmethod
    def _usable_database_url(cls, value: SecretStr | None) -> SecretStr | None:
        try:
            # Here, not at the top: the camera agent's install reads settings without SQLAlchemy.
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError, NoSuchModuleError
        except ImportError:
            return value
        if value is not None:
            try:  # the dialect only: its driver is imported when the engine is made
                make_url(value.get_secret_value()).get_dialect()
            except (ArgumentError, NoSuchModuleError, ValueError):
                # Never the value itself: it may hold a password.
                raise ValueError(
                    "not a database URL faceforge can use, such as postgresql+psycopg://user@host/db "
                    "or sqlite:////var/lib/faceforge/faceforge.db"
                ) from None
        return value

    @field_validator("admin_keys", "read_keys")
    @classmethod
    def _check_keys(cls, value: SecretStr) -> SecretStr:
        # No header can carry a control character: such a key matched no request, every call a 401.
        # Spaces and accents are fine (``access.presented_key`` reads them). Never the key itself.
        for key in _split_keys(value.get_secret_value()):
            if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in key):
                raise ValueError(
                    "an API key may not hold control characters (tabs, line breaks): no header carries them"
                )
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: str) -> str:
        for origin in _split_keys(value):
            if origin != "*" and _origin(origin) is None:
                raise ValueError(
                    f"{origin!r} is not an origin: scheme and host only, such as https://app.example.com "
                    "or http://localhost:3000"
                )
        return value

    @model_validator(mode="after")
    def _any_origin_needs_keys(self) -> Settings:
        if "*" in self.cors_origin_set and not self.auth_enabled:
            # Without keys, the origin is what keeps other web pages out (``serving.api.access``).
            raise ValueError(
                "FACEFORGE_CORS_ORIGINS=* needs API keys (FACEFORGE_ADMIN_KEYS or FACEFORGE_READ_KEYS): "
                "without them any web page could use this server; name the origins instead"
            )
        return self

    @property
    def cors_origin_set(self) -> frozenset[str]:
        """The origins of ``cors_origins`` as browsers send them (``*`` kept as is)."""
        return frozenset(_origin(origin) or origin for origin in _split_keys(self.cors_origins))

    @property
    def weights_dir(self) -> Path:
        return self.weights_cache.expanduser() if self.weights_cache else self.home / "weights"

    @property
    def client_runtime_path(self) -> Path:
        if self.client_runtime_dir is not None:
            return self.client_runtime_dir.expanduser()
        return Path(__file__).resolve().parents[3] / "client" / "node_modules" / "onnxruntime-web" / "dist"

    @property
    def files_dir(self) -> Path:
        return self.home / "files"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.home / 'faceforge.db'}"

    @property
    def allowed_host_set(self) -> frozenset[str]:
        return frozenset(name.lower().rstrip(".") for name in _split_keys(self.allowed_hosts))

    @property
    def admin_key_set(self) -> frozenset[str]:
        return _split_keys(self.admin_keys.get_secret_value())

    @property
    def read_key_set(self) -> frozenset[str]:
        return _split_keys(self.read_keys.get_secret_value())

    @property
    def auth_enabled(self) -> bool:
        return bool(self.admin_key_set or self.read_key_set)


def _split_keys(value: str) -> frozenset[str]:
    return frozenset(key.strip() for key in value.split(",") if key.strip())


def _origin(value: str) -> str | None:
    """``value`` as a browser's ``Origin`` header spells it (``scheme://host[:port]``: lower case, a
    name in punycode, no default port), or ``None`` if it is not one (a path, a query, credentials,
    another scheme, a wildcard or a space in the host, port 0)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in DEFAULT_PORTS or not host or "@" in parts.netloc or port == 0:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if ":" in host:  # an IPv6 literal, written in brackets; browsers refuse zone ids (%eth0)
        if "%" in host:
            return None
        try:
            host = f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            return None
    elif NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        # An IPv4 address, only as browsers write it (they send 127.0.0.1 for 127.1 or 0x7f.0.0.1).
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            return None
    else:
        try:  # international names as browsers send them (UTS #46: faß.de is xn--fa-hia.de)
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
        if not HOST_NAME.fullmatch(host):
            return None
    shown_port = "" if port is None or port == DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown_port}"


DEFAULT_PORTS = {"http": 80, "https": 443}
NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")


def settings_error(error: ValidationError | SettingsError) -> str:
    """One line naming each wrong setting as the environment spells it (``FACEFORGE_LIMITS__...``),
    what is wrong and the value given (never a secret's)."""
    if isinstance(error, SettingsError):  # not even JSON where a list or a group of settings is
        field = re.search(r'field "([^"]+)"', str(error))
        name = f"FACEFORGE_{field.group(1).upper()}" if field else "a FACEFORGE_ setting"
        return (
            f"{name} (or a {name}__ setting): cannot be read; a list or a group of settings is JSON, "
            'such as [0.6, 0.7, 0.8] or {"max_file_bytes": 20000000}'
        )
    problems = []
    for item in error.errors():
        # A list's item (THRESHOLDS' third) is named by the list's variable.
        names = itertools.takewhile(lambda part: isinstance(part, str), item["loc"])
        location = [str(part) for part in names]
        # Our own validators' reasons without pydantic's "Value error, " before them.
        reason = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
        given = item.get("input")
        shown = location and isinstance(given, str) and not _secret(location)
        name = "FACEFORGE_" + "__".join(location).upper() + ": " if location else ""
        problems.append(name + reason + (f" (given {given!r})" if shown else ""))
    return "; ".join(problems)


def _secret(location: list[str]) -> bool:
    """Whether the setting at ``location`` is declared ``SecretStr``: its value is never shown."""
    model: type[BaseModel] = Settings
    for name in location:
        field = model.model_fields.get(name)
        if field is None:
            return False
        if "SecretStr" in str(field.annotation):
            return True
        if not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return False
        model = field.annotation
    return False


def get_settings() -> Settings:
    """Read settings from the environment now (tests construct ``Settings`` directly instead)."""
    return Settings()
