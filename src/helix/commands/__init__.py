"""Subcommands of the ``helix`` CLI, one module each."""
