"""The project's exceptions (a leaf module: it imports nothing from cromss).

:class:`CromssError` is a mistake in the user's input (a config value, a command-line argument, a
file, a store, a download): the CLI prints it as one line naming the file and the problem, with
exit status 2. Anything else is a bug and keeps its traceback (exit status 1).
"""

from __future__ import annotations


class CromssError(ValueError):
    """An error caused by the user's input: printed without a traceback.

    A ``ValueError`` (the input has the right type but a wrong value), so code and tests that
    expect a ``ValueError`` from a bad input still get one; but the CLI treats only this class,
    not every ``ValueError``, as the user's mistake.
    """
