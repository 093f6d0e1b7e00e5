"""aiokafka's fetched-batch reader, tolerant of header names that are not UTF-8
(``visionline.kafka.tolerate_bad_header_names`` installs it)."""

from __future__ import annotations

import logging

from aiokafka.record.default_records import DefaultRecordBatch, _DefaultRecordBatchPy
from aiokafka.record.memory_records import _MemoryRecordsPy

log = logging.getLogger(__name__)


class LenientBytes(bytearray):
    """A buffer whose slices decode with escapes where the bytes are not UTF-8."""

    def __getitem__(self, index):
        got = super().__getitem__(index)
        return LenientBytes(got) if isinstance(index, slice) else got

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return super().decode(encoding, "backslashreplace")


class LenientBatch(_DefaultRecordBatchPy):
    _buffer: bytearray  # set by the base class

    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()
        if not isinstance(self._buffer, LenientBytes):
            self._buffer = LenientBytes(self._buffer)


class TolerantBatch:
    """The fast reader's batch; read again leniently if a header name fails to decode."""

    def __init__(self, batch, data) -> None:
        self._batch, self._data = batch, data

    def __getattr__(self, name):
        return getattr(self._batch, name)

    def __next__(self):  # a control batch's marker
        return next(self._batch)

    def __iter__(self):
        try:
            return iter(list(self._batch))
        except UnicodeDecodeError:
            log.warning("a record's header name is not UTF-8: read with escapes")
            return iter(LenientBatch(self._data))


class TolerantRecords(_MemoryRecordsPy):
    visionline_tolerant = True

    def next_batch(self, *args):
        data = self._next_slice
        batch = super().next_batch(*args)
        if isinstance(batch, DefaultRecordBatch):
            return TolerantBatch(batch, data)
        return batch
