"""The one exception type a user is meant to read."""


class NeuronAttackError(Exception):
    """Bad input or a missing resource the user can fix.

    The message is one sentence saying what was wrong and what to do; the CLI prints it without a
    traceback (``--debug`` shows one) and exits non-zero.
    """
