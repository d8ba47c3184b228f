"""fchannel: a durable, transactional file channel for Python stream
processing, after Apache Flume's File Channel.

>>> from fchannel import Event, MemoryChannel
>>> ch = MemoryChannel(capacity=10)
>>> with ch.transaction() as tx:
...     tx.put(Event(b"hello", {"host": "a"}))
>>> with ch.transaction() as tx:
...     tx.take().body
b'hello'
"""
from fchannel._compat import COMPILED
from fchannel.errors import (
    ChannelClosedError,
    ChannelError,
    ChannelFullError,
    ChannelLockedError,
    ConfigError,
    CorruptionError,
    TransactionError,
)
from fchannel.event import Event
from fchannel.file.channel import FileChannel
from fchannel.memory import MemoryChannel
from fchannel.transaction import Transaction

__version__ = "0.1.0"

__all__ = [
    "COMPILED",
    "ChannelClosedError",
    "ChannelError",
    "ChannelFullError",
    "ChannelLockedError",
    "ConfigError",
    "CorruptionError",
    "Event",
    "FileChannel",
    "MemoryChannel",
    "Transaction",
    "TransactionError",
    "__version__",
]
