"""The one exception type that means "the user asked for something invalid"."""

__all__ = ["BadInput"]


class BadInput(ValueError):
    """Invalid user input (unknown name, missing file, out-of-range option).

    The command line turns it into exit code 2 and a one-line message, no traceback.
    Library code raises it wherever the cause is the caller's input rather than a bug.
    """
