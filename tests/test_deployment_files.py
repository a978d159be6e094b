"""Dockerfile and compose.yaml, checked without a Docker daemon: every command they run is a valid
faceforge command line, every port, path, route and variable they name exists, and the API's and
worker's commands are the ones the topology test runs (``deployment_command``)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel

from faceforge.cli.main import app as cli
from faceforge.core.config import Settings
from faceforge.serving.api.access import declared_access
from faceforge.serving.api.app import create_app

ROOT = Path(__file__).resolve().parents[1]
VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


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
    instructions = dockerfile_instructions()
    (cmd,) = [args for keyword, args in instructions if keyword == "CMD"]
    commands = [_exec_form(cmd)]
    commands += [
        shlex.split(args)
        for keyword, args in instructions
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


def test_ports_paths_routes_and_variables_exist() -> None:
    instructions = dockerfile_instructions()
    environment: dict[str, str] = {}
    for keyword, args in instructions:
        if keyword == "ENV":
            environment.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
        if keyword == "COPY":
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    faceforge_variables = [name for name in environment if name.startswith("FACEFORGE_")]
    assert faceforge_variables and all(_setting_exists(name) for name in faceforge_variables)
    assert not _setting_exists("FACEFORGE_WORKER__NO_SUCH_THING")

    (exposed,) = [int(args) for keyword, args in instructions if keyword == "EXPOSE"]
    (volume,) = [args for keyword, args in instructions if keyword == "VOLUME"]
    assert volume == environment["FACEFORGE_HOME"]
    # Versions hard-link the backbones from the weights cache: it must be on the home's volume, and
    # converted (`faceforge prepare`) before the VOLUME line, which would discard later changes there.
    weights = Path(environment.get("FACEFORGE_WEIGHTS_CACHE", f"{volume}/weights"))
    assert weights.is_relative_to(volume), f"the weights cache {weights} is not on the volume {volume}"
    keywords = [(keyword, args) for keyword, args in instructions]
    assert keywords.index(("RUN", "faceforge prepare")) < keywords.index(("VOLUME", volume))
    (healthcheck,) = [args for keyword, args in instructions if keyword == "HEALTHCHECK"]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", healthcheck)
    assert url is not None and int(url.group(1)) == exposed
    assert url.group(2) in _public_paths()  # the probe needs no key
    (cmd,) = [args for keyword, args in instructions if keyword == "CMD"]
    assert _check_faceforge_command(_exec_form(cmd)).params["port"] == exposed
    user = next(args for keyword, args in instructions if keyword == "USER")
    assert user != "root" and any(
        "useradd" in args and user in args for k, args in instructions if k == "RUN"
    )

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
    assert services["worker"]["image"] == services["api"]["image"]

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


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.split("#")[0].strip().partition("==")
            pins[_canonical(name.split("[")[0])] = version
    return pins


def _runtime_closure() -> set[str]:
    """faceforge's installed dependencies without its extras, with theirs, transitively (markers
    evaluated on this machine), read from the installed packages' metadata."""
    from importlib import metadata

    from packaging.requirements import Requirement

    found: dict[str, set[str]] = {}
    pending = [(Requirement(raw), "") for raw in metadata.distribution("faceforge").requires or []]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = _canonical(requirement.name)
        extras = set(requirement.extras)
        if name in found and extras <= found[name]:
            continue
        found.setdefault(name, set()).update(extras)
        children = metadata.distribution(requirement.name).requires or []
        for raw in children:
            pending += [(Requirement(raw), wanted) for wanted in sorted(extras | {""})]
    return set(found)


def test_the_image_lock_holds_what_faceforge_runs_on_and_no_test_tools() -> None:
    """The Dockerfile installs requirements.lock alone: it must pin every runtime dependency, to the
    version installed here, and leave pytest, Playwright and the linters to requirements-dev.lock."""
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    closure = _runtime_closure() - {"torch", "faceforge"}  # torch: installed first, on its own
    assert closure - set(runtime) == set(), "runtime dependencies missing from requirements.lock"
    assert not set(runtime) & set(dev), "a package pinned in both locks"
    assert {"pytest", "playwright", "ruff", "mypy", "schemathesis"} <= set(dev)
    from importlib import metadata

    for name, version in runtime.items():
        assert metadata.version(name) == version, (
            f"{name}: installed {metadata.version(name)}, pinned {version}"
        )
    installs = " ".join(arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN")
    assert "-r requirements.lock" in installs and "requirements-dev.lock" not in installs
    assert "-r requirements-nodeps.txt" in installs and "nodeps-dev" not in installs


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
