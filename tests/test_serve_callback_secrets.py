"""The callbacks' keys: one variable of NAME=SECRET entries, each key kept as a Secret."""

from __future__ import annotations

import pytest

from importq.errors import ConfigError
from importq.serve.callbacks import SECRETS_SETTING, secret_of, secrets
from importq.settings import known_secret_values, load

WRITER_KEY = "fake-callback-key-for-tests-0011"
OTHER_KEY = "fake-callback-key-for-tests-0012"


def test_each_tokens_key_is_read_from_the_one_variable_and_redacted() -> None:
    settings = load({SECRETS_SETTING: f" writer={WRITER_KEY} ;\nother_app={OTHER_KEY};"})
    assert secret_of(settings, "writer") == WRITER_KEY
    assert secret_of(settings, "other_app") == OTHER_KEY
    assert secret_of(settings, "reader") == ""  # no key: that token asks for no callback
    assert {WRITER_KEY, OTHER_KEY} <= known_secret_values()


@pytest.mark.parametrize("value", ["writer", "=no-name-given-here-1", "writer=", "a b=c-long-key"])
def test_a_malformed_entry_is_named_by_its_place_never_shown(value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        secrets(load({SECRETS_SETTING: f"fine={WRITER_KEY};{value}"}))
    message = str(refused.value)
    assert SECRETS_SETTING in message and "entry 2" in message and "NAME=SECRET" in message
    assert WRITER_KEY not in message and (value.partition("=")[2] or value) not in message
