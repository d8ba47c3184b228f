from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CheckpointMeta(_message.Message):
    __slots__ = ("version", "write_order_id", "queue_size", "queue_head", "capacity", "ring_crc", "log_refs", "marks", "created_unix_ms", "log_ids", "next_transaction_id")
    class LogRefsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    class MarksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WRITE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_HEAD_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RING_CRC_FIELD_NUMBER: _ClassVar[int]
    LOG_REFS_FIELD_NUMBER: _ClassVar[int]
    MARKS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LOG_IDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    version: int
    write_order_id: int
    queue_size: int
    queue_head: int
    capacity: int
    ring_crc: int
    log_refs: _containers.ScalarMap[int, int]
    marks: _containers.ScalarMap[str, int]
    created_unix_ms: int
    log_ids: _containers.RepeatedScalarFieldContainer[int]
    next_transaction_id: int
    def __init__(self, version: _Optional[int] = ..., write_order_id: _Optional[int] = ..., queue_size: _Optional[int] = ..., queue_head: _Optional[int] = ..., capacity: _Optional[int] = ..., ring_crc: _Optional[int] = ..., log_refs: _Optional[_Mapping[int, int]] = ..., marks: _Optional[_Mapping[str, int]] = ..., created_unix_ms: _Optional[int] = ..., log_ids: _Optional[_Iterable[int]] = ..., next_transaction_id: _Optional[int] = ...) -> None: ...

class LogMeta(_message.Message):
    __slots__ = ("version", "log_id", "checkpoint_position", "checkpoint_write_order_id", "created_write_order_id", "last_write_order_id", "closed", "last_record_position")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LOG_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_POSITION_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_WRITE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_WRITE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_WRITE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    LAST_RECORD_POSITION_FIELD_NUMBER: _ClassVar[int]
    version: int
    log_id: int
    checkpoint_position: int
    checkpoint_write_order_id: int
    created_write_order_id: int
    last_write_order_id: int
    closed: bool
    last_record_position: int
    def __init__(self, version: _Optional[int] = ..., log_id: _Optional[int] = ..., checkpoint_position: _Optional[int] = ..., checkpoint_write_order_id: _Optional[int] = ..., created_write_order_id: _Optional[int] = ..., last_write_order_id: _Optional[int] = ..., closed: _Optional[bool] = ..., last_record_position: _Optional[int] = ...) -> None: ...

class InflightTransaction(_message.Message):
    __slots__ = ("transaction_id", "pointers")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    POINTERS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: int
    pointers: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, transaction_id: _Optional[int] = ..., pointers: _Optional[_Iterable[int]] = ...) -> None: ...

class Inflight(_message.Message):
    __slots__ = ("write_order_id", "transactions")
    WRITE_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    write_order_id: int
    transactions: _containers.RepeatedCompositeFieldContainer[InflightTransaction]
    def __init__(self, write_order_id: _Optional[int] = ..., transactions: _Optional[_Iterable[_Union[InflightTransaction, _Mapping]]] = ...) -> None: ...
