"""The service's settings: one dataclass that `tam serve` fills from its options and the app reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tam.errors import TamError


@dataclass(frozen=True)
class ServeOptions:
    """What `tam serve` runs with (its `--help` lists the same fields)."""

    model: str
    state: Path = Path("tam-serve")  # jobs, uploads, results and reports live here and survive a restart
    workers: int = 1  # jobs predicted at once (threads sharing the one loaded model)
    queue: int = 16  # jobs waiting beyond the running ones; one more is answered 429
    max_upload_mb: float = 512.0  # an upload over it is answered 413 (checked while it streams in)
    time_limit: float = 600.0  # seconds a job may run; it fails at the next encoder batch past it
    expire_hours: float = 0.0  # finished jobs older than this are deleted (0: kept)
    token_file: str = ""  # bearer tokens, one a line: /v1/* and /metrics then need one (401 none, 403 wrong)
    allow_folder: str = ""  # jobs may name files (or feature stores) under this folder on the server
    cors: tuple[str, ...] = ()  # origins allowed to call the API from a browser (none: CORS off)
    device: str = "auto"
    weights: dict[str, str] = field(default_factory=dict)  # modality -> local encoder weights
    audio_pca: str = ""
    timeline: str = "auto"
    words: str = ""
    vocab: str = ""
    batch: int = 8

    def check(self) -> ServeOptions:
        """Refuse impossible values with one line naming the option."""
        for name in ("workers", "queue", "batch"):
            if getattr(self, name) < 1:
                raise TamError(f"--{name} {getattr(self, name)}: give a number >= 1")
        for name in ("max_upload_mb", "time_limit"):
            if not getattr(self, name) > 0:
                raise TamError(f"--{name.replace('_', '-')} {getattr(self, name)}: give a number > 0")
        if self.expire_hours < 0:
            raise TamError(f"--expire-hours {self.expire_hours}: give a number >= 0 (0 keeps jobs)")
        if self.token_file and not Path(self.token_file).is_file():
            raise TamError(f"{self.token_file}: no such token file")
        if self.allow_folder and not Path(self.allow_folder).is_dir():
            raise TamError(f"{self.allow_folder}: no such folder (--allow-folder)")
        self.tokens()
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def tokens(self) -> list[str]:
        """The accepted bearer tokens (blank lines and `#` comments skipped); empty when auth is off."""
        if not self.token_file:
            return []
        lines = Path(self.token_file).read_text(encoding="utf-8").splitlines()
        tokens = [t.strip() for t in lines if t.strip() and not t.strip().startswith("#")]
        if not tokens:
            raise TamError(f"{self.token_file}: no token in the file (one a line)")
        return tokens
