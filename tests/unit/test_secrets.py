"""Secrets never reach written text (SPEC section 7)."""

from __future__ import annotations

import os
import traceback

import pytest

from pytest_mlexp.secrets import (
    REDACTED,
    Scrubber,
    default_scrubber,
    is_secret_key,
    key_words,
    redact_params,
    secret_param_values,
    secret_values,
)


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "hf_token",
        "apiKey",
        "APIKey",
        "AWS_SECRET_ACCESS_KEY",
        "db_password",
        "passwd",
        "client-secret",
        "wandb.apikey",
        "OPENAI_APIKEY",
        "access_key",
        "private-key",
        "privateKey",
        "gcp_credentials",
        "credential",
        "api_keys",
        "secrets",
        "hfToken",
        "token",
        "eos_token",  # string values under any *token key are hidden: over-redaction is the safe mistake
        "secretKey",
        "accesskey",
    ],
)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "key_dim",
        "tokenizer",
        "tokenizer_name",
        "keyframe",
        "key",
        "api_url",
        "access_mode",
        "private",
        "key_api",  # "key" before "api" is not "api key"
        "primary_key",
        "passage",
        "secretary",
        "detokenize",
        "model",
        "lr",
    ],
)
def test_not_secret_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_key_words_split_on_separators_and_camel_case() -> None:
    assert key_words("AWS_SECRET_ACCESS_KEY") == ("aws", "secret", "access", "key")
    assert key_words("myAPIKey2") == ("my", "api", "key", "2")
    assert key_words("hf-token.value") == ("hf", "token", "value")


def test_redact_params_only_strings_and_recursively() -> None:
    params = {
        "api_key": "sk-123",
        "hf_token": "hf_abc",
        "max_tokens": 256,  # an int under a token-ish key is kept: only strings are redacted
        "key_dim": 64,
        "tokenizer": "bpe",
        "model": {"name": "mlp", "dbPassword": "pw", "layers": [{"secret": "s", "width": 3}]},
        "credentials": {"user": "bob", "port": 5432, "nested": ["a", 1]},
        "api_keys": ["k1", "k2"],
        "tags": ("a", "b"),
        "empty_token": "",
    }
    out = redact_params(params)
    assert out == {
        "api_key": REDACTED,
        "hf_token": REDACTED,
        "max_tokens": 256,
        "key_dim": 64,
        "tokenizer": "bpe",
        "model": {"name": "mlp", "dbPassword": REDACTED, "layers": [{"secret": REDACTED, "width": 3}]},
        "credentials": {"user": REDACTED, "port": 5432, "nested": [REDACTED, 1]},
        "api_keys": [REDACTED, REDACTED],
        "tags": ("a", "b"),
        "empty_token": REDACTED,
    }
    assert params["api_key"] == "sk-123"  # a copy: the handler still sees the real value


def test_secret_param_values_feed_the_scrubber() -> None:
    params = {
        "api_key": "sk-live-1234567890",
        "eos_token": "</s>",
        "n": 3,
        "nested": {"password": "hunter2-long"},
    }
    assert secret_param_values(params) == ["sk-live-1234567890", "hunter2-long"]  # "</s>" is too short


ENV = {
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
    "MODAL_TOKEN_ID": "ak-modalid12345",
    "MODAL_TOKEN_SECRET": "as-modalsecret12345",
    "HF_TOKEN": "hf_abcdefghijklmnop",
    "OPENAI_API_KEY": "sk-openai-abcdefgh",
    "GITHUB_TOKEN": "ghp_abcdefghijkl",
    "MY_SECRET": "shhh-its-a-secret",
    "AWS_SECRET_ACCESS_KEY": "aws/secret+key=1234",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "true",  # flag-like: never scrubbed
    "SHORT_TOKEN": "1234",  # too short to be a credential; scrubbing it would mangle numbers
    "EMPTY_TOKEN": "",
    "PATH": "/usr/bin:/bin",
    "TOKENIZERS_PARALLELISM": "false",
    "HOME": "/root",
}


def test_secret_values_from_environment() -> None:
    values = secret_values(ENV)
    assert set(values) == {
        ENV["WANDB_API_KEY"],
        ENV["MODAL_TOKEN_ID"],
        ENV["MODAL_TOKEN_SECRET"],
        ENV["HF_TOKEN"],
        ENV["OPENAI_API_KEY"],
        ENV["GITHUB_TOKEN"],
        ENV["MY_SECRET"],
        ENV["AWS_SECRET_ACCESS_KEY"],
    }
    assert [len(v) for v in values] == sorted((len(v) for v in values), reverse=True)


def test_scrubber_in_a_traceback() -> None:
    scrubber = Scrubber(secret_values(ENV))
    try:
        raise RuntimeError(f"401 Unauthorized for key {ENV['WANDB_API_KEY']} (hf={ENV['HF_TOKEN']})")
    except RuntimeError:
        text = traceback.format_exc()
    assert ENV["WANDB_API_KEY"] in text
    clean = scrubber.scrub(text)
    assert ENV["WANDB_API_KEY"] not in clean and ENV["HF_TOKEN"] not in clean
    assert "401 Unauthorized for key *** (hf=***)" in clean
    assert "true" in scrubber.scrub("flag = true")  # short or flag-like env values are left alone


def test_scrubber_prefers_the_longest_value_and_escapes_regex() -> None:
    scrubber = Scrubber(["abc", "abcdef", "a.c+d"])
    assert scrubber.scrub("abcdef abc a.c+d axc+d") == "*** *** *** axc+d"


def test_scrub_obj_recurses_and_keeps_other_values() -> None:
    scrubber = Scrubber(["s3cr3t-value"])
    obj = {"msg": "key=s3cr3t-value", "n": 3, "list": ["s3cr3t-value", 1.5, None], "t": ("s3cr3t-value",)}
    assert scrubber.scrub_obj(obj) == {"msg": "key=***", "n": 3, "list": ["***", 1.5, None], "t": ("***",)}
    assert scrubber.scrub_obj({"s3cr3t-value": 1}) == {"***": 1}


def test_empty_scrubber_is_a_no_op() -> None:
    scrubber = Scrubber([])
    assert not scrubber
    text = "nothing to hide"
    assert scrubber.scrub(text) is text
    obj = {"a": ["b"]}
    assert scrubber.scrub_obj(obj) is obj
    assert Scrubber(["", ""]).values == ()


def test_scrubber_repr_never_shows_values() -> None:
    assert "hidden-value" not in repr(Scrubber(["hidden-value"]))


def test_extended_adds_values() -> None:
    base = Scrubber(["aaaaaaaaaa"])
    more = base.extended(["bbbbbbbbbb"])
    assert more.scrub("aaaaaaaaaa bbbbbbbbbb") == "*** ***"
    assert base.extended([]) is base


def test_default_scrubber_reads_environment_and_refreshes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-from-env-123")
    scrubber = default_scrubber(refresh=True)
    assert scrubber.scrub("k=wandb-key-from-env-123") == "k=***"
    assert default_scrubber() is scrubber
    monkeypatch.delenv("WANDB_API_KEY")
    assert default_scrubber(refresh=True).scrub("wandb-key-from-env-123") == "wandb-key-from-env-123"
    default_scrubber(refresh=True)


def test_secret_values_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SERVICE_API_KEY", "svc-key-abcdefgh")
    assert "svc-key-abcdefgh" in secret_values()
    assert os.environ["SOME_SERVICE_API_KEY"] == "svc-key-abcdefgh"
