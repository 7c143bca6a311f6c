"""Wiring: the Bytewax dataflow and the CLI, the only code that sees every layer."""
