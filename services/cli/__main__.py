"""``python -m services.cli``: the agensbus command without the console script."""

from services.cli import main

main()
