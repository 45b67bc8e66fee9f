"""``agensbus serve-cells TARGET``: serve cells of your own, written with services.sdk."""

from typing import Any

import click

from services.cli._errors import UserError
from services.cli.serve import RUNNING, serve
from services.runtime.service import Service
from services.runtime.settings import Settings, settings_options


@click.command("serve-cells", epilog=RUNNING)
@click.argument("target")
@settings_options()
def serve_cells(target: str, **flags: Any) -> None:
    """Serve cells of your own: the @cell functions of TARGET.

    TARGET is MODULE (the functions it decorated with services.sdk.cell) or MODULE:NAME (a
    services.sdk.CellSet); MODULE is a dotted name importable from the current directory or
    the path of a .py file. The worker executes only the invoke decisions of those cells,
    in the consumer group <worker-group>.<cell>+<cell> (its --worker-cells come from
    TARGET); run the built-in worker with --worker-cells-except CELL,... for the others.
    See docs/own-agents.md.
    """

    def build(settings: Settings) -> Service:
        from services.sdk import SdkError, cells_service
        from services.sdk.loading import load_cells
        from services.worker.cells import CellsError

        try:
            return cells_service(load_cells(target), settings)
        except (SdkError, CellsError) as error:
            raise UserError(str(error)) from None

    serve(flags, build)
