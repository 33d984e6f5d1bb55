"""``python -m hyperv_backup`` runs the command-line interface."""

from hyperv_backup.cli import main

main()
