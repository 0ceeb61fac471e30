"""One module per ``dlzo`` subcommand (see :mod:`dlzo.cli`)."""
