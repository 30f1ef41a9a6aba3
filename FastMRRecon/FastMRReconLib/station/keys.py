"""The station's secret links, kept in a sidecar file beside the study (``<study>.station.json``, readable by
its owner only) so that a restarted station gives every reader the same link.

Three kinds of token (``secrets.token_urlsafe``, 192 bits): one per reader (their personal link: it names the
reader, and their scores are recorded under that name), one for the organizer (the unblinded summary), and one
*join* token, a link a reader can open to enter their name and receive a personal link. Tokens are compared in
constant time (``hmac.compare_digest``) and checked on every request (``server``).
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from FastMRICommon.errors import InputError

FORMAT = "fastmrrecon-reading-station-1"
#: Longest reader name accepted (characters).
MAX_NAME = 64


def sidecar_path(study_path: Path) -> Path:
    return study_path.with_name(study_path.name + ".station.json")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def check_reader_name(name: str) -> str:
    """The stripped ``name``, or InputError (empty, longer than ``MAX_NAME``, or with control characters)."""
    name = (name or "").strip()
    if not name:
        raise InputError("enter a reader name")
    if len(name) > MAX_NAME:
        raise InputError(f"a reader name has at most {MAX_NAME} characters")
    if not name.isprintable():
        raise InputError("a reader name cannot hold control characters")
    return name


@dataclass
class StationKeys:
    """The tokens of one study's station (module docstring); ``readers``: ``{name: token}``."""

    path: Path
    study_id: str
    organizer: str
    join: str
    readers: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def load_or_create(cls, study_path: Path, study_id: str) -> StationKeys:
        """The keys of the study at ``study_path`` (new ones the first time). A sidecar of another study, or one
        that is not a station file, is refused with one line and left untouched."""
        path = sidecar_path(study_path)
        if not path.exists():
            keys = cls(path, study_id, new_token(), new_token())
            keys.save()
            return keys
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError("not a station file")
            keys = cls(path, data["study_id"], data["organizer"], data["join"], dict(data["readers"]))
            tokens = [keys.organizer, keys.join, *keys.readers.values()]
            if not all(isinstance(value, str) and value for value in tokens):
                raise ValueError("empty token")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(
                f"{path} is not a reading-station key file ({error}); move it away to make new links"
            ) from None
        if keys.study_id != study_id:
            raise InputError(f"{path} holds the links of another study; move it away to make new links")
        return keys

    def save(self) -> None:
        """Write the sidecar whole (temporary file, then rename), readable by its owner only."""
        data = {
            "format": FORMAT,
            "study_id": self.study_id,
            "organizer": self.organizer,
            "join": self.join,
            "readers": self.readers,
        }
        partial = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.partial")
        try:
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(descriptor, "w") as handle:
                    json.dump(data, handle, indent=1)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(partial, self.path)
            finally:
                partial.unlink(missing_ok=True)
        except OSError as error:
            raise InputError(f"cannot write the station's links to {self.path} ({error.strerror or error})") from None

    def add_reader(self, name: str, must_be_new: bool = False) -> str:
        """The token of reader ``name`` (a new one, saved, when the name is new). With ``must_be_new`` a name
        that already has a link is refused: whoever joins cannot take over another reader's scores."""
        name = check_reader_name(name)
        with self._lock:
            if name in self.readers:
                if must_be_new:
                    raise InputError(f"the name {name!r} is taken: use your personal link, or ask the organizer")
                return self.readers[name]
            self.readers[name] = new_token()
            self.save()
            return self.readers[name]

    def reader_for(self, token: str) -> str | None:
        """The reader whose token is ``token``, or None."""
        found = None
        for name, known in list(self.readers.items()):
            if hmac.compare_digest(known.encode(), token.encode()):
                found = name
        return found

    def is_organizer(self, token: str) -> bool:
        return hmac.compare_digest(self.organizer.encode(), token.encode())

    def is_join(self, token: str) -> bool:
        return hmac.compare_digest(self.join.encode(), token.encode())
