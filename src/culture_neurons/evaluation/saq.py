"""BLEnD short-answer matching: normalise, lemmatise, and look for contiguous token runs.

A generated answer counts as correct when, after normalisation, the token sequence of any
annotator answer occurs in it as a contiguous run.

Normalisation:

1. Unicode NFKC, then lower case;
2. tokens: runs of letters/digits (``\\w+``), except that Chinese/Japanese characters and Thai
   letters, which are written without spaces, are one token each;
3. **lemmatisation, English only**: tokens written in Latin letters (a-z) are lemmatised. With the
   ``simplemma`` package installed its English lemmatiser is used (:data:`LEMMATISER` says which);
   otherwise a small documented fallback strips English plural endings (``-ies`` -> ``-y``,
   ``-sses/-ches/-shes/-xes/-zes`` -> drop ``es``, other ``-s`` but not ``-ss/-us/-is`` -> drop
   ``s``; words of three letters or fewer are left alone). Tokens in any other script (Korean,
   Chinese, Arabic, Greek, Amharic, Persian, ...) are *not* lemmatised: they match only in their
   exact (NFKC, lower-cased) form.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

_CHAR_SCRIPTS = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f"
_TOKEN = re.compile(rf"[{_CHAR_SCRIPTS}]|[^\W{_CHAR_SCRIPTS}]+", re.UNICODE)
_LATIN = re.compile(r"^[a-z]+$")

try:  # a maintained lemmatiser, when installed
    import simplemma as _simplemma  # type: ignore[import-not-found]

    LEMMATISER = "simplemma (English)"
except ImportError:  # pragma: no cover - depends on the environment
    _simplemma = None
    LEMMATISER = "fallback: English plural stripping"

LEMMATISED_LANGUAGES = ("en",)


def _fallback_lemma(word: str) -> str:
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@lru_cache(maxsize=65536)
def lemma(word: str) -> str:
    """The English lemma of a lower-case Latin-letter word (see the module docstring)."""
    if _simplemma is not None:
        return _simplemma.lemmatize(word, lang="en").lower()
    return _fallback_lemma(word)


def normalise(text: str) -> list[str]:
    """NFKC, lower case, tokens, English lemmas (Latin-letter tokens only)."""
    tokens = _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())
    return [lemma(t) if _LATIN.match(t) else t for t in tokens]


def contains_run(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """Whether ``needle`` occurs in ``haystack`` as a contiguous run (an empty needle never does)."""
    n = len(needle)
    if n == 0 or n > len(haystack):
        return False
    first = needle[0]
    return any(haystack[i] == first and list(haystack[i : i + n]) == list(needle) for i in range(len(haystack) - n + 1))


def saq_match(prediction: str, answers: Iterable[str]) -> str | None:
    """The first annotator answer found in ``prediction`` (after normalisation), or None."""
    pred = normalise(prediction)
    for answer in answers:
        if contains_run(pred, normalise(answer)):
            return answer
    return None
