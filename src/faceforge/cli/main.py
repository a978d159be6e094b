"""The ``faceforge`` command."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from typer.core import TyperGroup

from faceforge.building.evaluation.app_detectors import AppDetector
from faceforge.building.export.quiet import quiet_conversion_tools
from faceforge.core.config import Settings, settings_error
from faceforge.core.errors import FaceforgeError
from faceforge.core.formats import ExportFormat
from faceforge.core.logs import LogFormat, logging_config
from faceforge.core.memory import ARENAS, MMAP_FROM_BYTES, limit_malloc_arenas, return_large_buffers
from faceforge.core.parent_watch import PARENT_PID_ENV
from faceforge.edge.choices import DetectorName, ModelChoice
from faceforge.serving.awake_cores import SHARED_PAGE_ENV, create_shared_page

if TYPE_CHECKING:
    from sqlalchemy import Engine


class _OneLineUsageErrors(TyperGroup):
    """Typer's command group, with a usage error (an unknown command or option, a missing argument, a
    value of the wrong type) said on one line and exit 2, as every other refusal of this CLI: Typer
    draws it in a box under the usage. Ctrl-C that no command handles itself says so: Typer exits 130
    without a word, which a user read as a crash (an export stopped while it started)."""

    def invoke(self, ctx: Any) -> Any:  # Typer's vendored click.Context, not importable by name
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            typer.echo("error: interrupted", err=True)
            raise typer.Exit(code=130) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:  # a caller that handles click's exceptions itself
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            # Not standalone, so that click's exceptions reach here; typer.Exit comes back as its code.
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as error:  # click's exceptions, as Typer ships them
            if type(error).__name__ == "NoArgsIsHelpError":  # Typer's own test of the class
                # With rich, making the help printed it; without (TYPER_USE_RICH=0), it is the message.
                if error.format_message().strip():
                    typer.echo(error.format_message(), err=True)
                sys.exit(error.exit_code)
            # A usage error (exit 2) names its command's help; the others (an unreadable file) say
            # enough. Click lists a choice's values on lines of their own, pydantic says "Value error".
            context = getattr(error, "ctx", None)
            command = context.command_path if context is not None else "faceforge"
            hint = f" (see {command} --help)" if error.exit_code == 2 else ""
            message = " ".join(error.format_message().replace("Value error, ", "").split())
            typer.echo(f"error: {message}{hint}", err=True)
            sys.exit(error.exit_code)
        except typer.Abort:
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineUsageErrors,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Self-hosted face recognition.",
)

HomeOption = Annotated[
    Path | None, typer.Option("--home", help="data directory (default: FACEFORGE_HOME or ~/.faceforge)")
]


def _settings(home: Path | None) -> Settings:
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as error:  # a wrong FACEFORGE_ variable: one line
        raise _fail(settings_error(error)) from None
    return settings.model_copy(update={"home": home.expanduser()}) if home else settings


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _upgraded_database(settings: Settings) -> Engine:
    """An engine on the database, migrated to the newest schema; one line and exit 2 when the
    database does not answer (a traceback before; from plain `serve`, a hundred lines of lifespan)."""
    from faceforge.storage.engine import make_engine, upgrade_database

    engine = make_engine(settings.resolved_database_url)
    try:
        upgrade_database(engine)
    except FaceforgeError as error:
        engine.dispose()
        _unmake_home(settings.home.expanduser())
        raise _fail(error.message) from None
    return engine


# Homes this command made (each with the first folder it made on the way), so a command that ends
# before any work leaves no empty folder behind (`worker --home H` with a database down left H/).
_made_homes: dict[Path, Path] = {}


def _unmake_home(home: Path) -> None:
    """Remove ``home`` and the folders made for it, if this command made them and they are empty."""
    first = _made_homes.pop(home, None)
    if first is None:
        return
    for folder in (home, *home.parents):
        try:
            folder.rmdir()
        except OSError:  # not empty: something was written there after all
            return
        if folder == first:
            return


def _worker_install(command: str) -> None:
    """A one-line exit when this install cannot run ``command`` (a serve-only install has no PyTorch)."""
    from faceforge.serving.vision.embedder import torch_installed

    if not torch_installed():
        raise _fail(f"`faceforge {command}` needs the worker install: pip install 'faceforge[worker]'")


def _usable_home(settings: Settings) -> Settings:
    """``settings`` once its home exists and is writable, or a one-line exit saying why not (a long
    -running command would otherwise fail in its start-up with a traceback)."""
    home = settings.home.expanduser()
    missing = [folder for folder in (home, *home.parents) if not folder.exists()]
    try:
        home.mkdir(parents=True, exist_ok=True)
        if missing:
            _made_homes[home] = missing[-1]
    except OSError as error:
        if home.exists() and not home.is_dir():  # mkdir said "File exists" (a tester's)
            raise _fail(f"the home {home} is a file, not a folder") from None
        raise _fail(f"cannot create the home {home}: {error.strerror or error}") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise _fail(f"the home {home} is not writable by this user")
    return settings


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress")] = False,
) -> None:
    quiet_conversion_tools()
    raw_format = os.environ.get("FACEFORGE_LOG_FORMAT", LogFormat.TEXT.value).lower()
    if raw_format not in set(LogFormat):
        raise _fail(f"FACEFORGE_LOG_FORMAT: must be one of {', '.join(LogFormat)} (given {raw_format!r})")
    # Other libraries log at WARNING and up; -v shows faceforge's own progress, one line per stage.
    ctx.obj = logging_config(LogFormat(raw_format), verbose=verbose)
    if logging.getLogger().handlers:  # a host already logs (a test runner): as basicConfig, keep its
        logging.getLogger("faceforge").setLevel(logging.INFO if verbose else logging.WARNING)
    else:
        logging.config.dictConfig(ctx.obj)


@app.command("eval")
def eval_command(
    dataset: Annotated[
        Path, typer.Option("--dataset", help="folder with one sub-folder of photos per person")
    ],
    enroll: Annotated[int, typer.Option("--enroll", min=1, help="photos enrolled per person")] = 5,
    unknown: Annotated[
        Path | None, typer.Option("--unknown", help="photos of people never enrolled (flat or in folders)")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="enrol K random photos per person")] = None,
    people: Annotated[
        int | None,
        typer.Option("--people", help="enrol only N people: the first N folders, or N at random with --seed"),
    ] = None,
    strangers: Annotated[
        Path | None,
        typer.Option(
            "--strangers",
            help="photos of strangers given to calibration, a folder per stranger or one photo each "
            "(must differ from --unknown)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    app_detector: Annotated[
        AppDetector | None,
        typer.Option(
            "--app-detector",
            help="crop probes and unknowns from this detector's boxes, as an app would (default: server's)",
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Measure recognition on your own photos: enrol K per person, probe the rest, reject unknowns."""
    from faceforge.building.evaluation.harness import EvalOptions, evaluate
    from faceforge.serving.vision.pipeline import FacePipeline

    try:
        settings = _usable_home(_settings(home))
        options = EvalOptions(
            dataset,
            enroll,
            unknown,
            seed,
            settings.target_unknown_reject,
            app_detector,
            people=people,
            strangers=strangers,
        )
        figures = evaluate(FacePipeline(settings), options)
    except FaceforgeError as error:
        raise _fail(error.message) from None
    if as_json:
        typer.echo(json.dumps(figures))
    else:
        _print_figures(figures)


def _print_figures(figures: dict[str, Any]) -> None:
    for key, value in figures.items():
        if isinstance(value, float):
            value = round(value, 4)
        sys.stdout.write(f"{key:>28}: {value}\n")


LOOPBACK = "127.0.0.1"


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="address to bind")] = LOOPBACK,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="API processes sharing the port, database and home; above 1 the embedded trainer is "
            "off: run `faceforge worker` beside them",
        ),
    ] = 1,
    home: HomeOption = None,
) -> None:
    """Run the HTTP API and, unless FACEFORGE_WORKER__EMBEDDED=false or --workers > 1, one training
    worker in-process."""
    import uvicorn

    limit_malloc_arenas()
    return_large_buffers()
    settings = _usable_home(_settings(home))
    _check_address(host, port)
    log = logging.getLogger("faceforge.serve")
    if not settings.auth_enabled:
        if settings.open_network_without_keys:
            log.warning(
                "no API keys and FACEFORGE_OPEN_NETWORK_WITHOUT_KEYS: anyone who reaches %s may write; "
                "requests are answered for its IP addresses, localhost and FACEFORGE_ALLOWED_HOSTS (%s)",
                host,
                ", ".join(sorted(settings.allowed_host_set)) or "none set",
            )
        else:
            log.warning(
                "no API keys (FACEFORGE_ADMIN_KEYS / FACEFORGE_READ_KEYS): only loopback clients are served"
            )
    log_config = ctx.obj
    # Only the page this command makes (below) is shared: a value from elsewhere names no page of ours.
    os.environ.pop(SHARED_PAGE_ENV, None)
    if workers == 1:
        from faceforge.serving.api.app import create_app
        from faceforge.serving.vision.embedder import torch_installed
        from faceforge.serving.wiring import NO_EMBEDDED_WORKER

        if settings.worker.embedded and not torch_installed():
            raise _fail(NO_EMBEDDED_WORKER)
        _upgraded_database(settings).dispose()  # the app's start-up would say it as a traceback
        uvicorn.run(create_app(settings), host=host, port=port, log_config=log_config)
        return
    # Before this process's environment is changed for the processes: a database that does not answer
    # ends the command here, with nothing changed (a caller in this process went on without a trainer).
    _upgraded_database(settings).dispose()  # once, before the processes start
    # The processes are started afresh by uvicorn and read their settings from the environment.
    log.warning(
        "%d API processes: the embedded training worker is off; run `faceforge worker` beside them "
        "(same database and home)",
        workers,
    )
    os.environ["FACEFORGE_HOME"] = str(settings.home)
    os.environ["FACEFORGE_WORKER__EMBEDDED"] = "false"
    os.environ.setdefault("MALLOC_ARENA_MAX", str(ARENAS))  # what limit_malloc_arenas does here
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_FROM_BYTES))  # and return_large_buffers
    # Each process counts into files here and /metrics sums them; the files belong to this machine's
    # processes of this run, so the directory is made afresh (never on the shared home).
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir = given or tempfile.mkdtemp(prefix="faceforge-metrics-")
    for stale in Path(metrics_dir).glob("*.db"):
        stale.unlink()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[PARENT_PID_ENV] = str(os.getpid())  # the processes end if this one is killed outright
    # One page of memory says which of them has a photo in progress, so that no process keeps the
    # cores awake through another's photo (``AwakeCores``).
    photos_page = create_shared_page()
    if photos_page is not None:
        os.environ[SHARED_PAGE_ENV] = str(photos_page[1])
    try:
        _run_processes(host, port, workers, log_config)
    finally:
        if photos_page is not None:
            os.environ.pop(SHARED_PAGE_ENV, None)
            os.close(photos_page[0])
        if given is None:  # ours: nothing reads it once the processes are gone
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _check_address(host: str, port: int) -> None:
    """Say before anything starts when the address cannot be listened on (a port in use, a host name
    that names no address of this machine): uvicorn says it after the app's start-up, in several log
    lines, and exits 3. Every address the host resolves to is tried, as asyncio's server binds them."""
    try:
        addresses = socket.getaddrinfo(
            host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as error:  # socket.gaierror: a host that does not resolve
        raise _fail(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    for family, kind, protocol, _, address in addresses:
        try:
            probe = socket.socket(family, kind, protocol)
        except OSError:  # a family this kernel lacks (IPv6 off): asyncio skips it too
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            if family == socket.AF_INET6:  # as asyncio: the IPv4 address is bound apart
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                raise _fail(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def _run_processes(host: str, port: int, workers: int, log_config: dict[str, Any]) -> None:
    """``uvicorn.run``'s multi-process path, with ``TCP_NODELAY`` on the shared socket. uvicorn binds
    it without the TCP protocol number, so asyncio leaves Nagle's algorithm on for every accepted
    connection and each small answer waits ~40 ms for the client's delayed ACK (measured: 22 answers
    a second on a keep-alive connection instead of ~1,800). Accepted connections inherit the option."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    config = Config(
        "faceforge.serving.api.app:create_supervised_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config,
    )
    sock = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()


@app.command("export")
def export_command(
    version: Annotated[int, typer.Option("--version", min=1, help="a ready model version")],
    export_format: Annotated[ExportFormat, typer.Option("--format", help="which on-device files")],
    # Text, not a Path: Path("") is ".", and --out "" must not mean the folder the command was typed in.
    out_text: Annotated[str, typer.Option("--out", help="directory to write the files into")],
    home: HomeOption = None,
) -> None:
    """Export a version's on-device files again (same bytes as the version's own files)."""
    _worker_install("export")  # the files are built again from the head: the converters' install
    from faceforge.building.exports import ExportInterrupted, export_version
    from faceforge.serving.services.models import ModelService
    from faceforge.storage.engine import make_sessionmaker

    if not out_text.strip():
        raise _fail("--out names no folder (give a path, such as --out ./model)")
    out = Path(out_text)
    settings = _settings(home)
    if not settings.models_dir.expanduser().is_dir():  # a mistyped --home would get an empty database
        raise _fail(f"no faceforge home at {settings.home.expanduser()} (it holds no model versions)")
    engine = _upgraded_database(settings)
    try:
        models = ModelService(settings, make_sessionmaker(engine))
        summary = export_version(models, version, export_format, out)
    except FaceforgeError as error:
        raise _fail(error.message) from None
    except ExportInterrupted as interrupt:  # it ended with no word, the folder perhaps half written
        typer.echo(f"error: interrupted; {interrupt.message()}", err=True)
        raise typer.Exit(code=130) from None
    finally:
        engine.dispose()
    typer.echo(json.dumps(summary))


@app.command("import")
def import_command(
    context: typer.Context,
    folder: Annotated[
        Path | None, typer.Argument(help="one sub-folder of photos per person (the folder name)")
    ] = None,
    strangers: Annotated[
        Path | None,
        typer.Option(
            "--strangers",
            help="people never to be named: one sub-folder of photos per stranger, or one loose photo each",
        ),
    ] = None,
    home: HomeOption = None,
    server: Annotated[
        str | None, typer.Option("--server", help="import into a running server (URL) instead of --home")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="FACEFORGE_API_KEY", help="an admin key of --server")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait for the model version")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as one JSON object")] = False,
) -> None:
    """Import folder-per-person photos (and strangers with --strangers): people by folder name,
    strangers by folder name or photo, photos by content, resumable; one model version at the end."""
    from faceforge.cli.bulk import run_import
    from faceforge.core.dataset import overlapping

    source = context.get_parameter_source("api_key")  # an enum of Typer's own copy of click
    given = source is not None and source.name == "COMMANDLINE"
    if server is None and api_key is not None and given:
        # Silently ignored, a key meant for a server would leave a user thinking it was used.
        raise _fail("--api-key is for --server: an import into --home needs no key")
    if server is not None and home is not None:
        # The server was imported into and --home silently ignored: which did the user mean?
        raise _fail("give --server or --home, not both: --server imports into a running server's home")
    if folder is not None and strangers is not None and overlapping(folder, strangers):
        # The same photos as people and as strangers: every one of those people would never be named.
        raise _fail("--strangers must be a folder apart from the people's folder (neither inside the other)")
    settings = _settings(home) if server is not None else _usable_home(_settings(home))
    # SIGTERM (a service manager, `kill`, a CI job's timeout) stops it as Ctrl-C does: the people in
    # flight finish, the summary says what was stored and the next run resumes. Killed at once, it
    # exited 143 without a word (a tester's).
    terminated: list[int] = []

    def stop(number: int, _frame: object) -> None:
        terminated.append(number)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        summary = run_import(
            folder, strangers=strangers, settings=settings, server=server, api_key=api_key, wait=wait
        )
    except FaceforgeError as error:
        _unmake_home(settings.home.expanduser())  # only if made here and still empty
        raise _fail(error.message) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))
    else:
        _print_import_summary(summary.as_dict())
    if summary.interrupted:
        raise typer.Exit(code=128 + signal.SIGTERM if terminated else 130)


def _print_import_summary(summary: dict[str, Any]) -> None:
    done = "interrupted (run again to resume)" if summary["interrupted"] else "done"

    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"

    sys.stdout.write(
        f"import {done}: {count(summary['people_created'], 'person', 'people')} created, "
        f"{summary['people_found']} found, "
        f"{count(summary['strangers_created'], 'stranger', 'strangers')} created, "
        f"{summary['strangers_found']} found, "
        f"{count(summary['photos_accepted'], 'photo', 'photos')} accepted, "
        f"{len(summary['refused'])} refused, "
        f"{summary['photos_already_imported']} already imported "
        f"({summary['photos_per_second']} photos/s)\n"
    )
    if summary["trained_earlier_request"]:
        sys.stdout.write("nothing new was imported; the version an earlier run asked for was trained\n")
    elif not summary["photos_accepted"]:
        sys.stdout.write("nothing new was imported; no new model version\n")
    for refusal in summary["refused"]:
        sys.stdout.write(f"  refused {_whose_photo(refusal)}: {refusal['message']}\n")
    for note in summary["notes"]:
        sys.stdout.write(f"  note on {_whose_photo(note)}: {note['message']}\n")
    for photo in summary["ignored"]:
        sys.stdout.write(f"  ignored {photo}: {NOT_IN_A_PERSON_FOLDER}\n")
    for copy in summary["repeated"]:
        sys.stdout.write(f"  repeated {_whose_photo(copy)}: {copy['message']}\n")
    not_current = summary["not_current"]
    if not_current is not None:
        sys.stdout.write(f"model version {not_current['version']} is not current: {not_current['message']}\n")
    if summary["version"] is not None:
        sys.stdout.write(f"model version {summary['version']} is current\n")
    elif not_current is not None:
        sys.stdout.write("no model version is current\n")


def _whose_photo(verdict: dict[str, Any]) -> str:
    """``person/file``, ``stranger folder/file``, or for a loose photo collected as a stranger
    ``stranger file`` (as its progress line says; it has no folder)."""
    if "person" in verdict:
        return f"{verdict['person']}/{verdict['file']}"
    if verdict["stranger"] is None:  # a loose photo: its folder is the collection's
        return f"stranger {verdict['file']}"
    return f"stranger {verdict['stranger']}/{verdict['file']}"


NOT_IN_A_PERSON_FOLDER = "not in a person's folder (each person is a sub-folder named after them)"


@app.command("build")
def build_command(
    dataset: Annotated[Path, typer.Option("--dataset", help="one sub-folder of photos per person")],
    out: Annotated[Path, typer.Option("--out", help="new (or empty) folder for the files and the report")],
    holdout: Annotated[
        float, typer.Option("--holdout", min=0.0, max=0.95, help="share of each person's photos held out")
    ] = 0.2,
    unknown: Annotated[
        Path | None, typer.Option("--unknown", help="photos of people never enrolled, for the report")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="which photos are held out")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as one JSON object")] = False,
    home: HomeOption = None,
) -> None:
    """Folder-per-person photos to model.tflite, labels.txt, Core ML, ONNX and a report, no server."""
    _worker_install("build")
    from faceforge.building.build import REPORT_HTML, REPORT_JSON, BuildOptions, build_model
    from faceforge.cli.progress import ProgressDisplay

    options = BuildOptions(dataset, out, holdout, unknown, seed)
    existed = (out / REPORT_JSON).is_file()  # refused below as OUT not empty: not this build's
    # SIGTERM (a service manager's stop, `kill`, a CI job's timeout) stops it as Ctrl-C does, so its
    # work folder goes: killed outright, it left a gigabyte of photos and model files beside OUT.
    # Raised as Ctrl-C's KeyboardInterrupt, where the same cleanup runs (the importer catches it and
    # raises its own: which signal it was is kept here).
    # Each signal is also remembered: the KeyboardInterrupt can be swallowed where it lands, and the
    # build asks before it writes OUT (``build_model``'s ``stopped``).
    received: list[int] = []

    def stop(number: int, _frame: object) -> None:
        received.append(number)
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        with ProgressDisplay() as display:
            report = build_model(
                options, _usable_home(_settings(home)), display.update, stopped=lambda: bool(received)
            )
    except KeyboardInterrupt:
        terminated = signal.SIGTERM in received
        # Deferred while OUT was put in place, a stop then comes after it is whole (``build_model``).
        written = (out / REPORT_JSON).is_file() and not existed
        said = "the build had finished: OUT holds it" if written else "nothing was written"
        typer.echo(f"error: {'terminated' if terminated else 'interrupted'}; {said}", err=True)
        raise typer.Exit(code=128 + signal.SIGTERM if terminated else 130) from None
    except FaceforgeError as error:
        raise _fail(error.message) from None
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if as_json:
        typer.echo(json.dumps({key: value for key, value in report.items() if key != "quality"}))
        return
    for key in (
        "people",
        "enrolled_photos",
        "held_out_photos",
        "top1",
        "known_accept_rate",
        "unknown_reject_rate",
        "tflite_agreement",
        "threshold",
    ):
        value = report[key]
        shown = "–" if value is None else round(value, 4) if isinstance(value, float) else value
        sys.stdout.write(f"{key:>18}: {shown}\n")
    for refusal in report["refused"]:
        sys.stdout.write(f"  refused {_whose_photo(refusal)}: {refusal['message']}\n")
    for note in report["notes"]:
        sys.stdout.write(f"  note on {_whose_photo(note)}: {note['message']}\n")
    for photo in report["held_out_unusable"]:
        sys.stdout.write(f"  held out {photo['person']}/{photo['file']}: {photo['message']}, not measured\n")
    for photo in report["ignored"]:
        sys.stdout.write(f"  ignored {photo}: {NOT_IN_A_PERSON_FOLDER}\n")
    sys.stdout.write(f"wrote {len(report['files'])} files to {out}; report: {out / REPORT_HTML}\n")


@app.command("prepare")
def prepare_command(home: HomeOption = None) -> None:
    """Convert every network once into the weights cache (a container image does this at build time,
    so its processes start warm): the server's detector and embedder, and the on-device backbones of
    the configured formats. A serve-only install reads the server's networks from there."""
    _worker_install("prepare")
    from faceforge.building.export.version_exports import VersionExporter
    from faceforge.building.networks.detector_graphs import write_split_graph
    from faceforge.building.networks.embedding_graph import export_embedding_graph
    from faceforge.building.networks.embedding_quantization import quantize_embedding_graph
    from faceforge.serving.vision.pipeline import prepare_networks

    settings = _usable_home(_settings(home))
    try:
        prepare_networks(
            settings.weights_dir,
            export=export_embedding_graph,
            quantize=quantize_embedding_graph,
            split=write_split_graph,
        )
        VersionExporter(settings.weights_dir, settings.worker.export_formats).prepare()
    except FaceforgeError as error:
        raise _fail(error.message) from None
    typer.echo(f"weights ready in {settings.weights_dir}")


@app.command("worker")
def worker_command(home: HomeOption = None) -> None:
    """Run one training worker on its own (for deployments with several API processes)."""

    _worker_install("worker")

    from faceforge.building.worker.trainer import TrainingWorker
    from faceforge.storage.engine import make_sessionmaker

    limit_malloc_arenas()
    return_large_buffers()
    settings = _usable_home(_settings(home))
    engine = _upgraded_database(settings)
    worker = TrainingWorker(settings, make_sessionmaker(engine))

    def stop(_signal: int, _frame: object) -> None:
        worker.stop.set()
        worker.wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_supervised()
    engine.dispose()


@app.command("watch")
def watch_command(
    source: Annotated[
        str, typer.Argument(help="a video file or its URL, an rtsp:// or http:// stream, or /dev/videoN")
    ],
    server: Annotated[
        str | None, typer.Option("--server", help="faceforge server to take models from (once, then offline)")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="FACEFORGE_API_KEY", help="a read key of the server")
    ] = None,
    camera: Annotated[
        str, typer.Option("--camera", help="camera name: topic faceforge/<camera>/person")
    ] = "camera",
    mqtt: Annotated[str | None, typer.Option("--mqtt", help="broker, mqtt://[user:pass@]host:port")] = None,
    model: Annotated[
        ModelChoice, typer.Option("--model", help="which exported files run")
    ] = ModelChoice.TFLITE_INT8,
    detector: Annotated[DetectorName, typer.Option("--detector", help="face detector")] = DetectorName.MTCNN,
    cache: Annotated[
        Path, typer.Option("--cache", envvar="FACEFORGE_EDGE_CACHE", help="where the model files are kept")
    ] = Path("~/.faceforge/edge"),
    poll: Annotated[
        float, typer.Option("--poll", min=0.1, help="seconds between asking for a new version")
    ] = 60.0,
    drain: Annotated[
        float,
        typer.Option("--drain", min=0, help="seconds to wait at the end for the broker to take decisions"),
    ] = 30.0,
    discovery_prefix: Annotated[
        str, typer.Option("--discovery-prefix", help="Home Assistant's MQTT discovery prefix")
    ] = "homeassistant",
    topic_prefix: Annotated[
        str,
        typer.Option(
            "--topic-prefix",
            help="the first level of every topic and the Home Assistant node: one per faceforge server",
        ),
    ] = "faceforge",
    realtime: Annotated[bool, typer.Option("--realtime", help="play a file at its frame rate")] = False,
    threads: Annotated[int, typer.Option("--threads", min=1, help="threads the networks use")] = 1,
) -> None:
    """Recognise faces on a camera with the exported on-device model; one JSON line per decision on
    stdout, and on MQTT with Home Assistant discovery when --mqtt is given."""
    from faceforge.edge.errors import WatchError
    from faceforge.edge.watch import WatchOptions, watch

    options = WatchOptions(
        source=source,
        cache=cache,
        camera=camera,
        server=server,
        api_key=api_key,
        mqtt=mqtt,
        model=model,
        detector=detector,
        poll_seconds=poll,
        drain_seconds=drain,
        discovery_prefix=discovery_prefix,
        topic_prefix=topic_prefix,
        realtime=realtime,
        threads=threads,
    )
    try:
        watch(options, lambda line: typer.echo(line))
    except WatchError as error:
        raise _fail(error.message) from None


if __name__ == "__main__":
    app()
