"""Redis replies are parsed by hiredis (C), not redis-py's Python parser."""

from __future__ import annotations

import redis
from redis._parsers import _HiredisParser
from redis.utils import HIREDIS_AVAILABLE


def test_redis_replies_are_parsed_in_c(redis_client: redis.Redis) -> None:
    # A claim's reply (the unit, the job and the records) took the Python parser a good
    # part of a millisecond on a busy machine, on every unit's way to its vendor call.
    assert HIREDIS_AVAILABLE
    redis_client.ping()
    connection = redis_client.connection_pool.get_connection()
    try:
        assert isinstance(connection._parser, _HiredisParser)
    finally:
        redis_client.connection_pool.release(connection)
