"""Noisy stand-in judges for the audit's proof, one module per setting, as a function judge names a module."""
