"""``wedsync crm``: import a product's CSV export (a DBOS workflow, with a progress bar), export CSV, show merges."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wedsync.terminal import fail, in_range, interrupted, known_vendor, make_console

NAME = "crm"
app = typer.Typer(help="CRM hub: CSV import/export, merges.", no_args_is_help=True)
console = make_console(stderr=True)
out = make_console()


async def _import_with_progress(hub: Any, vendor_id: str, job_id: str, *, quiet: bool) -> dict[str, Any]:
    from dbos import DBOS

    from wedsync.workflows.crm import start_import

    await start_import(job_id, here=True)
    handle: Any = await DBOS.retrieve_workflow_async(job_id)
    task = asyncio.ensure_future(handle.get_result())
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console, disable=quiet) as bar:
        status = hub.crm.import_status(vendor_id, job_id)
        t = bar.add_task(f"import {status['layout']}", total=status["total_rows"] or None, detail="")
        while True:
            done = task.done()
            status = hub.crm.import_status(vendor_id, job_id)
            bar.update(t, completed=status["processed_rows"],
                       total=max(status["total_rows"] or 0, status["processed_rows"]) or None,
                       detail=f"{status['bad_rows']} bad, {status['merged']} merged")
            if done:
                break
            await asyncio.sleep(0.2)
    await task
    return dict(hub.crm.import_status(vendor_id, job_id))


@app.command("import")
def import_csv(
    file: Annotated[Path, typer.Argument(help="the product's CSV export")],
    vendor: Annotated[str, typer.Option(help="vendor id")],
    layout: Annotated[str, typer.Option(help="honeybook, 17hats, studio-ninja or iris-works")],
    connection: Annotated[str | None, typer.Option(help="connection id (default: the vendor's for the layout)")] = None,
    chunk_size: Annotated[int, typer.Option(help="rows per workflow step")] = 1000,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Import a CSV as a durable workflow (one step per chunk); prints the job and its bad rows."""
    from wedsync.bootstrap import command_dbos, get_hub
    from wedsync.config import get_settings
    from wedsync.errors import WedsyncError

    if not file.is_file():
        fail(f"no such file: {file}")
    hub = get_hub()
    try:
        job = hub.crm.create_import(vendor, layout, file.read_bytes(), connection_id=connection,
                                    filename=file.name, chunk_size=chunk_size)
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})")
    try:
        with command_dbos(get_settings(), hub.db):  # this process runs the import, and nothing else
            try:
                status = asyncio.run(_import_with_progress(hub, vendor, job["id"], quiet=quiet))
            except KeyboardInterrupt:  # cancelled while DBOS runs, so nothing is left for a worker to resume
                status = _import_interrupted(hub, vendor, job["id"], file)
    except KeyboardInterrupt:  # while DBOS started or stopped
        status = _import_interrupted(hub, vendor, job["id"], file)
    errors = hub.crm.import_errors(vendor, job["id"], limit=50)
    out.print_json(json.dumps({**status, "first_errors": errors}))
    if status["status"] != "succeeded":
        raise typer.Exit(1)


def _import_interrupted(hub: Any, vendor_id: str, job_id: str, file: Path) -> dict[str, Any]:
    """Ctrl-C during ``wedsync crm import``: the job's workflow is cancelled and the job recorded as failed
    (interrupted) with the chunks it imported, so no worker or later command resumes it behind the user's back;
    one line says what was kept. A job that ended meanwhile is reported as it ended."""
    from wedsync.cli import cancel_interrupted_workflow

    cancelled = cancel_interrupted_workflow(job_id)
    status = hub.crm.import_status(vendor_id, job_id)
    if status["status"] not in ("queued", "running"):
        return dict(status)
    if not cancelled:
        interrupted(f"import job {job_id} is left {status['status']} (its workflow could not be cancelled): "
                    f"`wedsync worker` or `wedsync serve` on this database resumes it")
    status = hub.crm.finish_import(job_id, "interrupted: cancelled with Ctrl-C in `wedsync crm import`")
    interrupted(f"import job {job_id} cancelled after {status['processed_rows']} of {status['total_rows']} rows "
                f"({status['chunks_done']} chunks, kept); nothing is left running: importing {file} again imports "
                f"the rest (rows already imported are updated, not added twice)")


@app.command("export")
def export(
    vendor: Annotated[str, typer.Option(help="vendor id")],
    layout: Annotated[str, typer.Option(help="honeybook, 17hats, studio-ninja or iris-works")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file (default: stdout)")] = None,
    connection: Annotated[str | None, typer.Option(help="one connection's records instead of unified clients")]
    = None,
) -> None:
    """Write the unified clients (or one connection's records) in a product's CSV layout."""
    from wedsync.bootstrap import get_hub
    from wedsync.errors import WedsyncError

    hub = get_hub()
    known_vendor(hub, vendor)
    written = [0]
    progress = Progress(TextColumn("[bold]export {task.description}"), TextColumn("{task.completed} rows"),
                        TimeElapsedColumn(), console=console, transient=True,
                        disable=output is None or not console.is_terminal)  # stdout is the CSV itself
    task = progress.add_task(layout, total=None)

    def tick() -> None:
        written[0] += 1
        if written[0] % 500 == 0:
            progress.update(task, completed=written[0])

    try:
        chunks = hub.crm.export_csv(vendor, layout, connection_id=connection, on_row=tick)
        first = next(chunks, b"")
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})")
    try:
        sink = output.open("wb") if output else sys.stdout.buffer
    except OSError as exc:  # no such directory, a directory, no permission
        fail(f"cannot write {output}: {exc.strerror or exc}")
    try:
        with progress:
            sink.write(first)
            for chunk in chunks:
                sink.write(chunk)
        if output:
            sink.close()  # its last bytes are written here
        else:
            sink.flush()
    except BrokenPipeError:  # `wedsync crm export ... | head`: the reader has what it wanted; end quietly
        _quiet_stdout()
        raise typer.Exit(0) from None
    except OSError as exc:  # the disk filled up
        fail(f"cannot write {output or 'the export'}: {exc.strerror or exc}")
    finally:
        if output and not sink.closed:
            with contextlib.suppress(OSError):
                sink.close()
    if output:
        console.print(f"wrote {written[0]} row(s) to {output}")


def _quiet_stdout() -> None:
    """After the reader of stdout went away: point stdout at /dev/null, so that the interpreter's own last flush
    does not report the broken pipe either."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@app.command("merges")
def merges(vendor: Annotated[str, typer.Option(help="vendor id")],
           limit: Annotated[int, typer.Option(help="how many (1 to 500)")] = 20) -> None:
    """The latest merges with their rule and evidence, and the count per rule."""
    from wedsync.bootstrap import get_hub

    in_range(limit, 1, 500, "--limit")
    hub = get_hub()
    known_vendor(hub, vendor)
    out.print_json(json.dumps({"by_rule": hub.crm.merge_summary(vendor),
                               "latest": hub.crm.list_merges(vendor, limit=limit)}))
