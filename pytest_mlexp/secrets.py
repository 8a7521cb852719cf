"""Keeping credentials out of everything the plugin writes (SPEC section 7).

Two mechanisms, because secrets arrive two ways:

* params: a string value is redacted when its key *names* a secret (``api_key``, ``hfToken``);
  the key is split into words so that ``key_dim`` or ``tokenizer`` are not mistaken for one.
* text: the values of credential environment variables (and of redacted params) are replaced
  by ``***`` wherever they appear: tracebacks, findings, terminal lines.

Decisions where the SPEC is silent:

* Plurals count as the word (``secrets``, ``passwords``, ``tokens``, ``credentials``,
  ``api_keys``): a key named in the plural almost always holds the same kind of value, and
  redacting too much is the safe mistake.  ``max_tokens``/``num_tokens`` hold ints in practice,
  and only strings are ever redacted.  ``tokenizer``, ``tokenized``, ``key_dim`` are not words
  of the list and are never redacted.
* The single words ``accesskey``, ``privatekey`` and ``secretkey`` are secret, as ``apikey`` is.
* Under a secret key every string inside nested lists and mappings is redacted too
  (``api_keys: [a, b]``, ``credentials: {user: u, password: p}``); numbers and bools are kept.
* Environment values shorter than 8 characters, and flag-like values (``true``, ``1``,
  ``disabled``...), are not scrubbed: ``HF_HUB_DISABLE_IMPLICIT_TOKEN=true`` must not turn every
  "true" in a traceback into ``***``; real tokens are 20 to 60 characters long.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .textutil import lazy_re

__all__ = [
    "REDACTED",
    "Scrubber",
    "default_scrubber",
    "is_secret_key",
    "key_words",
    "redact_params",
    "secret_param_values",
    "secret_texts",
    "secret_values",
]

REDACTED = "***"

_SECRET_WORDS = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "token",
        "tokens",
        "apikey",
        "apikeys",
        "credential",
        "credentials",
        "accesskey",
        "privatekey",
        "secretkey",
    }
)
_KEY_PREFIXES = frozenset({"api", "access", "private"})
_KEY_WORDS = frozenset({"key", "keys"})

# Upper-case runs (``API`` in ``APIKey``), capitalised or lower-case words, digit runs.
_WORD_RE = lazy_re(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# Credential environment variables: these names, and any name ending in one of the suffixes
# (or equal to a suffix without its underscore: ``TOKEN``).
_ENV_NAMES = frozenset({"WANDB_API_KEY", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "HF_TOKEN"})
_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_SECRET_KEY", "_ACCESS_KEY", "_PASSWORD")
_MIN_SECRET_LEN = 8
_NOT_SECRETS = frozenset(
    {"true", "false", "yes", "no", "none", "null", "disabled", "enabled", "offline", "online"}
)


@functools.lru_cache(maxsize=4096)
def key_words(key: str) -> tuple[str, ...]:
    """The lower-case words of a key, split on ``_``, ``-``, ``.`` (any non-alphanumeric) and camelCase."""
    return tuple(w.lower() for w in _WORD_RE.findall(key))


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a param key names a secret (see the module docstring for the rule)."""
    words = key_words(key)
    for i, word in enumerate(words):
        if word in _SECRET_WORDS:
            return True
        if word in _KEY_PREFIXES and i + 1 < len(words) and words[i + 1] in _KEY_WORDS:
            return True
    return False


def _redact(value: Any, secret: bool) -> Any:
    if isinstance(value, str):
        return REDACTED if secret else value
    if isinstance(value, Mapping):
        return {k: _redact(v, secret or is_secret_key(str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secret) for v in value]
    if isinstance(value, tuple):
        return tuple(_redact(v, secret) for v in value)
    return value


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with every string under a secret key replaced by ``***``, at any depth."""
    if not params:  # a sub-experiment without params (many are): no comprehension to copy none
        return {}
    return {k: _redact(v, is_secret_key(str(k))) for k, v in params.items()}


def _worth_scrubbing(value: str) -> bool:
    return len(value) >= _MIN_SECRET_LEN and value.strip().lower() not in _NOT_SECRETS


def _collect(value: Any, secret: bool, out: list[str]) -> None:
    if isinstance(value, str):
        if secret:
            out.append(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _collect(v, secret or is_secret_key(str(k)), out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect(v, secret, out)


def secret_texts(params: Mapping[str, Any]) -> list[str]:
    """Every string under a secret-named key of ``params``, at any depth, however short: what
    :func:`redact_params` replaces (the plan cache keeps no plan that has one, plancache.py)."""
    out: list[str] = []
    _collect(params, False, out)
    return out


def secret_param_values(params: Mapping[str, Any]) -> list[str]:
    """The string values :func:`redact_params` hides, for scrubbing them from text as well.

    (A handler that prints its ``api_key`` param, or an exception message that quotes it.)
    Short and flag-like values are left out, as for environment variables.
    """
    if not params:  # most sub-experiments' stub_params, many params: asked for every one at start
        return []
    return _longest_first(v for v in secret_texts(params) if _worth_scrubbing(v))


def _is_credential_env(name: str) -> bool:
    upper = name.upper()
    return upper in _ENV_NAMES or any(upper.endswith(s) or upper == s[1:] for s in _ENV_SUFFIXES)


def _longest_first(values: Iterable[str]) -> list[str]:
    # longest first, so a secret that contains another is replaced whole
    return sorted(set(values), key=lambda v: (-len(v), v))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of credential environment variables, longest first.

    ``WANDB_API_KEY``, ``MODAL_TOKEN_ID``, ``MODAL_TOKEN_SECRET``, ``HF_TOKEN`` and any name
    ending in ``_API_KEY``, ``_TOKEN``, ``_SECRET``, ``_SECRET_KEY``, ``_ACCESS_KEY`` or
    ``_PASSWORD``; values shorter than 8 characters or flag-like are skipped.
    """
    env = os.environ if environ is None else environ
    return _longest_first(v for k, v in env.items() if v and _is_credential_env(k) and _worth_scrubbing(v))


class Scrubber:
    """Replaces known secret values with ``***`` in text and in nested plain data."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values: tuple[str, ...] = tuple(_longest_first(v for v in values if v))
        # one alternation: a single pass over the text whatever the number of secrets
        self._pattern = re.compile("|".join(re.escape(v) for v in self.values)) if self.values else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __repr__(self) -> str:
        return f"Scrubber(<{len(self.values)} values>)"  # never the values themselves

    def extended(self, values: Iterable[str]) -> Scrubber:
        """A scrubber that also hides ``values`` (e.g. :func:`secret_param_values` of an item)."""
        more = [v for v in values if v and v not in self.values]
        return self if not more else Scrubber([*self.values, *more])

    def scrub(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)

    def scrub_obj(self, obj: Any) -> Any:
        """``obj`` with every string in it (mapping keys included) scrubbed; other values as they are."""
        if self._pattern is None:
            return obj
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, Mapping):
            return {(self.scrub(k) if isinstance(k, str) else k): self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.scrub_obj(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self.scrub_obj(v) for v in obj)
        return obj


_default: Scrubber | None = None


def default_scrubber(refresh: bool = False) -> Scrubber:
    """A scrubber for the credential variables of ``os.environ``, built once (``refresh`` rebuilds)."""
    global _default
    if _default is None or refresh:
        _default = Scrubber(secret_values())
    return _default
