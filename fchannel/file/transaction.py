"""FileTransaction: one transaction on a FileChannel, owning its record
buffer and what it staged, put or took.  The channel's commit path
(``commit.py``) writes what the transaction holds and resets it."""
from __future__ import annotations

from typing import TYPE_CHECKING

from fchannel._compat import codec
from fchannel.errors import ChannelError, TransactionError
from fchannel.event import Event
from fchannel.transaction import Transaction

if TYPE_CHECKING:
    from fchannel.file.channel import FileChannel

#: a put transaction writes its buffer out early once it holds this much
FLUSH_BYTES = 4 << 20


class FileTransaction(Transaction):
    """A transaction on a :class:`FileChannel` (see :class:`Transaction`)."""

    def __init__(self, channel: FileChannel, txn_id: int, dir_index: int) -> None:
        super().__init__(channel.transaction_capacity)
        self._ch = channel
        self.id = txn_id
        self.dir = dir_index              # the data dir all its records go to
        self.buf = bytearray()            # records not written yet
        self.starts: list[int] = []       # offsets of the put records in buf
        self.flushed: list[int] = []      # pointers of put records already in the log
        self.pending = 0                  # events staged (buffered or flushed)
        self.taken: list[int] = []        # pointers taken, in order
        self.marks: dict[str, int] | None = None
        self.attempts = 0                 # events offered to put
        self.wrote = False                # some of its records may be in the log
        self.failed: str | None = None    # why it can only be rolled back
        self.unknown = False              # its commit may or may not be on disk
        self.on_the_way = False           # committing, not yet written (group commit)

    def set_mark(self, key: str, value: int) -> None:
        """Commit ``key = value`` atomically with this transaction; the
        channel's :attr:`FileChannel.marks` holds the latest committed value
        per key across restarts (e.g. the next Kafka offset of a partition)."""
        if self.state != "OPEN":
            raise TransactionError(f"cannot set a mark: transaction is {self.state}, "
                                   "set_mark needs OPEN")
        if not isinstance(key, str) or not key:
            raise TypeError(f"mark key must be a non-empty str, got {key!r}")
        try:
            key.encode("utf-8")
        except UnicodeEncodeError as exc:   # a lone surrogate: the log stores keys as UTF-8
            raise ValueError(f"mark key {key!r} is not valid text: {exc.reason} at position "
                             f"{exc.start}; a mark key must be encodable as UTF-8") from None
        if isinstance(value, bool) or not isinstance(value, int) or \
                not -(1 << 63) <= value < (1 << 63):
            raise TypeError(f"mark {key!r} must be a 64-bit int, got {value!r}")
        if self.marks is None:
            self.marks = {}
        self.marks[key] = value

    # ---- what the commit path uses ------------------------------------------------
    def stage(self, events: list[Event], max_record: int) -> None:
        """Encode put records for *events* into the buffer; on any error
        (a record over *max_record* bytes among them) the buffer is as before."""
        mark = len(self.buf)
        nstarts = len(self.starts)
        try:
            sealer = self._ch._sealer
            if sealer is None:
                codec.encode_puts(self.buf, self.id, events, self.starts)
            else:   # encrypted at rest: each put's payload sealed (docs/FORMAT.md)
                aad = codec.sealed_aad(self.id)
                for e in events:
                    self.starts.append(codec.encode_sealed(
                        self.buf, self.id, sealer.seal(codec.put_payload(e), aad)))
            if len(self.buf) - mark > max_record:  # some record may be too big: look at each
                for k in range(nstarts, len(self.starts)):
                    end = self.starts[k + 1] if k + 1 < len(self.starts) else len(self.buf)
                    if end - self.starts[k] > max_record:
                        raise ChannelError(
                            f"event {k - nstarts} of {end - self.starts[k]} bytes (as a record) "
                            f"does not fit in a log file: with max_file_size="
                            f"{self._ch._settings.max_file_size} a record holds at most {max_record} "
                            "bytes; raise max_file_size")
        except BaseException:
            del self.buf[mark:]
            del self.starts[nstarts:]
            raise
        self.pending += len(events)

    def wants_flush(self) -> bool:
        return len(self.buf) >= FLUSH_BYTES

    def written(self) -> None:
        """The buffer reached the log: start a new one."""
        self.buf = bytearray()
        self.starts = []

    def reset_puts(self) -> None:
        """After a commit or rollback of puts."""
        self.written()
        self.flushed = []
        self.pending = 0

    # ---- the state machine's hooks ---------------------------------------------------
    def _do_put(self, events: list[Event]) -> None:
        self._ch._put(self, events)

    def _do_take(self, n: int) -> list[Event]:
        return self._ch._take(self, n)

    def _do_commit(self) -> None:
        self._ch._commit(self)

    def _do_rollback(self) -> None:
        self._ch._rollback(self)
