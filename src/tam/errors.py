"""One exception type for bad user input: its message is a single line naming the file or video."""


class TamError(Exception):
    """Bad input or a refused operation. The CLI prints `error: <message>` and exits 2."""


def first_line(e: BaseException, n: int = 160) -> str:
    """The first sentence of an exception's message, on one line (its type name when it has none)."""
    text = next((line for line in str(e).splitlines() if line.strip()), "")
    return text.split(". ")[0].strip()[:n] or type(e).__name__
