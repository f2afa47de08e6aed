"""Checks of caller-given values shared by every rule module: ids, texts, windows, durations.

Resource and user ids are compared after NFC normalization, so the same name
typed on two keyboards is the same resource. Ids that only look alike
(surrounding spaces, compatibility characters such as fullwidth letters) are
refused instead of becoming a second resource. Ids are case-sensitive.
"""

import datetime
import unicodedata
import uuid

from .errors import invalid
from .model import MAX_NS, MIN_NS, NANOS_PER_SECOND

MAX_ID_LENGTH = 128
MAX_NOTE_LENGTH = 4096
EPOCH = datetime.datetime(1970, 1, 1)


def check_text(field: str, value: str, max_length: int, required: bool) -> None:
    if required and not value:
        raise invalid(field, "must not be empty")
    if len(value) > max_length:
        raise invalid(field, f"must be at most {max_length} characters, got {len(value)}")
    if not value.isprintable():
        raise invalid(field, "must contain printable characters only")


def name(field: str, value: str, required: bool = True) -> str:
    """A resource or user id, NFC-normalized; look-alikes are refused."""
    normalized = unicodedata.normalize("NFC", value)
    check_text(field, normalized, MAX_ID_LENGTH, required)
    if normalized != normalized.strip():
        raise invalid(field, "must not start or end with whitespace")
    if unicodedata.normalize("NFKC", normalized) != normalized:
        raise invalid(
            field,
            "must not contain compatibility characters (such as fullwidth letters or ligatures): "
            f"write {unicodedata.normalize('NFKC', normalized)!r}",
        )
    return normalized


def reservation_id(value: str, field: str = "id") -> None:
    if not value:
        raise invalid(field, "must not be empty")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value:
        raise invalid(field, "must be a reservation id as returned by reserve (a lowercase UUID)")


def window(field_start: str, field_end: str, start_ns: int, end_ns: int) -> None:
    if not MIN_NS <= start_ns <= MAX_NS or not MIN_NS <= end_ns <= MAX_NS:
        raise invalid(field_start, "must lie in years 1 to 9999")
    if start_ns >= end_ns:
        raise invalid(field_end, f"must be after {field_start}")


def iso(instant_ns: int) -> str:
    seconds, nanos = divmod(instant_ns, NANOS_PER_SECOND)
    stamp = (EPOCH + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z" if nanos else f"{stamp}Z"


def duration_text(duration_ns: int) -> str:
    """A duration as people write it: 90m, 1h30m, 2d, 1.5s."""
    if duration_ns % NANOS_PER_SECOND:
        return f"{duration_ns / NANOS_PER_SECOND:g}s"
    seconds = duration_ns // NANOS_PER_SECOND
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
