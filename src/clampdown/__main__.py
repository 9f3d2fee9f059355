"""`python -m clampdown` is the `clampdown` command."""

from clampdown.cli.main import app

app()
