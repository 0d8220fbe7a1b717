"""``python -m asc`` is the ``asc`` command."""

from asc.cli import main

main()
