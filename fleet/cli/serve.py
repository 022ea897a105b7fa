"""``fleet serve``: the command that runs the service (``fleet.service``)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from fleet.cli.common import ConfigOption, load_config, open_influx
from fleet.service import ServiceRefused, run_service
from vigie_core.errors import TlsError

log = logging.getLogger("fleet")


def serve(
    config: ConfigOption = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    ready_file: Annotated[
        Path | None,
        typer.Option(help="Create this file once subscribed (for scripts that start agents)."),
    ] = None,
) -> None:
    """Run the fleet service: MQTT in, InfluxDB out, until SIGTERM."""
    settings = load_config(config)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: one line per InfluxDB write.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    influx = open_influx(settings)
    try:
        run_service(settings, influx, stop, ready_file)
    except ServiceRefused as exc:
        log.error("%s", exc)  # noqa: TRY400 - the reason is the message, no trace
        raise typer.Exit(exc.status) from None
    except TlsError as exc:
        log.error("%s", exc)  # noqa: TRY400
        raise typer.Exit(2) from None
    finally:
        influx.close()
