"""Which cells a worker serves, so that workers of one's own can serve some cells and the
built-in worker the rest (docs/own-agents.md). Every worker set reads every decision in a
consumer group of its own and takes only the invokes of the cells it serves."""

from dataclasses import dataclass

from services.policy import CellPool


class CellsError(ValueError):
    """The worker was told to serve or leave out a cell the pool does not have."""


def cell_names(text: str) -> frozenset[str]:
    """The names of a comma-separated list (blanks dropped)."""
    return frozenset(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True, slots=True)
class ServedCells:
    """``only`` empty serves every cell; ``leave_out`` wins over ``only``."""

    only: frozenset[str] = frozenset()
    leave_out: frozenset[str] = frozenset()

    @classmethod
    def of(cls, only: str, leave_out: str, pool: CellPool) -> "ServedCells":
        served = cls(cell_names(only), cell_names(leave_out))
        unknown = sorted((served.only | served.leave_out) - set(pool.cells))
        if unknown:
            raise CellsError(
                f"worker cells name {', '.join(unknown)}, which the pool does not have "
                f"(its cells: {', '.join(sorted(pool.cells))})"
            )
        if served.only and served.only <= served.leave_out:
            raise CellsError("worker cells leave out every cell they name: nothing to serve")
        return served

    def serves(self, cell: str) -> bool:
        return (not self.only or cell in self.only) and cell not in self.leave_out
