"""Sub-commands of ``python -m masuka``, one module each."""
