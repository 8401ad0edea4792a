"""Service URLs as `run` and `status` print them: never the password."""

from __future__ import annotations

import pytest

from core.masking import masked_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://mch:s3cret@rabbit.example:5672/mch", "amqp://mch:***@rabbit.example:5672/mch"),
        (
            "postgresql+psycopg://mch:p%40ss@db:5432/mch?sslmode=require",
            "postgresql+psycopg://mch:***@db:5432/mch?sslmode=require",
        ),
        ("amqp://mch:a@b@rabbit/", "amqp://mch:***@rabbit/"),
        ("postgresql+psycopg://postgres@127.0.0.1/test", "postgresql+psycopg://postgres@127.0.0.1/test"),
        ("sqlite:///var/engine.db", "sqlite:///var/engine.db"),
        ("memory://", "memory://"),
    ],
)
def test_the_password_is_masked_and_nothing_else_changes(url: str, shown: str) -> None:
    assert masked_url(url) == shown
