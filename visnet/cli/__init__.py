"""The ``visnet`` command: every subcommand, one error boundary (``visnet.cli.main``)."""

from visnet.cli.main import main

__all__ = ["main"]
