"""One exception type for bad user input: its message is a single line naming the file or video."""


class TamError(Exception):
    """Bad input or a refused operation. The CLI prints `error: <message>` and exits 2."""
