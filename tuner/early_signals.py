"""Imported first by :mod:`tuner.cli`: a Ctrl-C or SIGTERM while the command's imports load
exits 130 / 143 in one line, not with a traceback (see :func:`tuner.signals.exit_quietly_on_signals`)."""

from tuner.signals import exit_quietly_on_signals

exit_quietly_on_signals()
