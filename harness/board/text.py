"""Text safety shared by the board model and its renderers.

Every string taken from a record is untrusted.  :func:`clean` makes it one line of text (line
breaks and control characters become spaces, direction overrides are dropped, an optional
length limit); the model stores cleaned text, and each renderer escapes it for its format:
:func:`md_escape` / :func:`md_code` for Markdown, :func:`html.escape` for HTML, the :mod:`csv`
module for CSV and :func:`json.dumps` for JSON.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_MD_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u0085]+")  # newlines, CR, tabs, other controls
_MD_BIDI = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069]")  # direction overrides (reorder text)
_MD_PUNCT = re.compile(r"[\\`*\[\]!|~#$]")
_MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
CODE_SAFE = re.compile(r"[A-Za-z0-9_.:/+=@-]+")
"""Strings shown as code spans as they are (code spans do not honour backslash escapes)."""


def clean(value, limit: int | None = None) -> str:
    """``value`` as one line of text: line breaks and control characters become spaces,
    direction overrides are removed; ``limit``: at most that many characters (an ellipsis
    ends a cut text).  Idempotent."""
    text = _MD_BIDI.sub("", _MD_BREAKS.sub(" ", "" if value is None else str(value)))
    if limit is not None and len(text) > limit:
        text = text[:max(limit - 1, 0)] + "\u2026"
    return text


def md_escape(value, limit: int | None = None) -> str:
    """``value`` as inert Markdown text on one line: line breaks and control characters become
    spaces, ``<``, ``>`` and ``&`` HTML entities, and the punctuation that starts Markdown syntax
    (backslash, backticks, ``*``, ``[``, ``]``, ``!``, ``|``, ``~``, ``#``, ``$``) is
    backslash-escaped, so a record string can neither end a table cell or line, nor open a
    link, image, code span or raw HTML.  ``limit``: at most that many characters of the text."""
    text = "".join(_MD_ENTITIES.get(c, c) for c in clean(value, limit))
    return _MD_PUNCT.sub(lambda m: "\\" + m.group(0), text)


def is_code_safe(text: str, limit: int | None = None) -> bool:
    return bool(CODE_SAFE.fullmatch(text)) and (limit is None or len(text) <= limit)


def md_code(value, limit: int | None = None) -> str:
    """A record string as a Markdown code span when it is a plain identifier (code spans do not
    honour backslash escapes), else as :func:`md_escape` text."""
    text = "" if value is None else str(value)
    if is_code_safe(text, limit):
        return f"`{text}`"
    return md_escape(text, limit)


def md_link_target(path: str) -> str:
    """A relative path as a link destination (percent-encoded: no space, parenthesis or bracket
    can end a Markdown link early)."""
    return quote(str(path), safe="/._-~")


SAFE_HREF = re.compile(r"(?![a-zA-Z][a-zA-Z0-9+.-]*:)(?!//)[A-Za-z0-9_.~/%#-]+")
"""Relative links only: no scheme (``javascript:``, ``data:``, ``http:``), no ``//host``."""


_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:|//|\\")


def is_relative_link(path: str) -> bool:
    """``path`` names no scheme (``javascript:``, ``data:``, ``http:``) and no ``//host``: a
    relative path (or ``#anchor``) only."""
    return not _SCHEME.match(str(path))


_URL = re.compile(r"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[A-Za-z0-9_.~/%#?=&+-]*)?")
"""A plain http(s) URL: host, optional port and a path of unreserved characters (no quotes,
spaces, parentheses, brackets or angle brackets that could end a Markdown link or an attribute)."""


def is_url(value) -> bool:
    """``value`` is a plain http(s) URL (:data:`_URL`): safe as a link target as it is."""
    return bool(_URL.fullmatch(str(value or ""))) and len(str(value)) <= 500


_URL_IN_TEXT = re.compile(_URL.pattern)


def first_url(value) -> str | None:
    """The first plain http(s) URL in ``value`` (a citation such as ``"Author 2017, Title,
    https://arxiv.org/abs/1703.01365"``), without a sentence's trailing dot; None if there is none."""
    m = _URL_IN_TEXT.search(str(value or ""))
    if m is None:
        return None
    url = m.group(0).rstrip(".,;")
    return url if is_url(url) else None
