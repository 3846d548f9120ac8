"""``python -m batchpilot`` runs the CLI."""

from batchpilot.cli.app import main

main()
