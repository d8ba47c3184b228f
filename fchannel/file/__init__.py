"""The FileChannel: Flume's durable File Channel, one job per module.

- ``channel.py``      the channel's face and its opening (locks, checkpoint, replay)
- ``config.py``       settings: defaults, Flume's property names and units, validation
- ``transaction.py``  FileTransaction: owns its record buffer, staged puts, takes, marks
- ``state.py``        the in-memory state commits, takes and checkpoints share
- ``commit.py``       the commit path: write, sync (group commit), apply in order; rollback
- ``checkpointer.py`` when and how a checkpoint is taken
- ``checkpoint.py``   the checkpoint files: the mmap'd queue, its meta, in-flight files
- ``gc.py``           which log files a checkpoint freed (``plan``, pure) and their
  journalled deletion
- ``log.py``          log files: writing with rolls, syncing, reading events, ``.meta``
- ``replay.py``       rebuilding the queue from a checkpoint and the logs after it
- ``tools.py``        ``fchannel inspect`` and ``fchannel check``
- ``format.py``       the one definition of the on-disk format (docs/FORMAT.md)
- ``_codec.pyx`` / ``_codec_py.py``  compiled record framing, crc, pwrite/pread/fdatasync,
  and its pure twin
- ``_queue.pyx`` / ``_queue_py.py``  compiled ring of event pointers with reference counts,
  and its pure twin
"""
