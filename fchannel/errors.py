"""The one exception hierarchy of fchannel.

Every error the library raises on purpose is a :class:`ChannelError`, so a
caller can catch the family with one ``except`` and a specific case with the
subclass.  Messages name the thing at fault (a property, a file, a state) and
the value that was wrong.
"""
from __future__ import annotations

import errno

__all__ = [
    "ChannelError",
    "ChannelFullError",
    "ChannelClosedError",
    "ChannelLockedError",
    "TransactionError",
    "CorruptionError",
    "ConfigError",
    "KeyMissingError",
    "DecryptionError",
]

#: the errnos that mean "the disk (or the quota) is full"
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class ChannelError(Exception):
    """Base class of every error raised by fchannel."""


class ChannelFullError(ChannelError):
    """No room: the channel stayed at capacity (or below the minimum free disk
    space) for the whole ``keep_alive`` wait."""


class ChannelClosedError(ChannelError):
    """The channel was closed; open a new one to go on."""


class ChannelLockedError(ChannelError):
    """Another live process holds the channel's directories."""


class TransactionError(ChannelError):
    """The transaction state machine was misused (for example put after
    commit), or the transaction capacity was exceeded."""


class CorruptionError(ChannelError):
    """Data on disk failed its checks and could not be recovered."""


class ConfigError(ChannelError, ValueError):
    """A setting or property has a wrong type, range or combination.

    It is also a :class:`ValueError`, so generic validation code catches it.
    """


class KeyMissingError(ConfigError):
    """An encrypted record names a key alias that is not in the channel's key
    ring: add that key (``encryption.keyProvider.keys.<alias>.keyFile``)."""


class DecryptionError(ChannelError):
    """An encrypted record failed its authentication tag: the key given for
    its alias is not the key that wrote it (the record's checksum passed, so
    the bytes are as written)."""


class KeyMismatchError(DecryptionError, ConfigError):
    """At open: the key file given for an alias holds other key material
    than the key that wrote the channel's events (a configuration problem)."""


def from_os_error(exc: OSError, channel: str, doing: str) -> ChannelError:
    """The library's error for *exc*, met while *doing* (a phrase that names
    the file or directory): ChannelFullError when the disk is full; a
    ChannelError saying "read-only file system" or "permission denied" for
    those; else a ChannelError naming the channel, what failed and the errno.  Raise it
    ``from exc``."""
    if exc.errno in NO_SPACE:
        return ChannelFullError(f"channel {channel!r}: no space left {doing} ({exc.strerror}); "
                                "free some space (nothing committed was lost)")
    if exc.errno == errno.EROFS:
        return ChannelError(f"channel {channel!r}: {doing}: read-only file system "
                            f"({exc.strerror}): the channel writes there; give a writable "
                            "directory or remount it read-write")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ChannelError(f"channel {channel!r}: {doing}: permission denied ({exc.strerror});"
                            " the channel needs to create, read and write files there")
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return ChannelError(f"channel {channel!r}: {doing} failed: {code} ({exc.strerror or exc})")
