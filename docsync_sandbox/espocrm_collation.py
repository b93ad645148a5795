"""MariaDB's ``utf8mb4_unicode_ci`` (EspoCRM's default collation, contract §11.2) as a Python sort/compare key.

Observed on the loopback MariaDB 10.11 of ``../shared/real-espocrm`` (``tests/sandbox/test_espocrm_real_options.py``
pins it): case is ignored, accents are ignored (``'a' = 'ä'``), trailing spaces are ignored (PAD SPACE),
``'ss' <> 'ß'``, and punctuation sorts before digits, digits before letters, in this order::

    (space) ` ^ _ - , ; : ! ? . ' " ( ) [ ] { } @ * / \\ & # % + < = > | ~ $ 0-9 a-z

Lowercase hex ids (what EspoCRM makes) are their own key, so the common case costs one ``translate``.
"""

from __future__ import annotations

import string
import unicodedata
from typing import Any

__all__ = ["PUNCTUATION_ORDER", "collation_key"]

PUNCTUATION_ORDER = " `^_-,;:!?.'\"()[]{}@*/\\&#%+<=>|~$"
_TABLE = {ord(ch): chr(1 + i) for i, ch in enumerate(PUNCTUATION_ORDER)}
_TABLE.update({ord(ch): ch.lower() for ch in string.ascii_uppercase})


def collation_key(value: Any) -> str:
    """The ``utf8mb4_unicode_ci`` key of a string: equal keys compare equal on the server, and keys sort as
    ``ORDER BY`` does (for ASCII exactly; other letters by their unaccented, lower-case form)."""
    text = str(value).rstrip(" ")
    if not text.isascii():
        text = "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))
        text = text.lower()  # not casefold: "ß" is not "ss" here
    return text.translate(_TABLE)
