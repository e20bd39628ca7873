"""A streaming multipart/form-data reader: text fields go to a callback, file bytes go straight to a sink.

Fed chunk by chunk as the request body arrives, so no file is ever held whole in memory or spooled twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from tuneforge.errors import BadRequest

MAX_FIELD_BYTES = 64 * 1024

Sink = Callable[[memoryview], None]


class FormHandler(Protocol):
    def field(self, name: str, value: str) -> None: ...

    def file_begin(self, field: str, filename: str) -> Sink | None:
        """Where the part's bytes go; None discards them (the handler has already said why)."""

    def file_end(self) -> None: ...


class FormStream:
    """Parses one multipart body fed with `feed(chunk)`; `close()` checks that the body was complete."""

    def __init__(self, content_type: str | None, handler: FormHandler) -> None:
        kind, params = parse_options_header(content_type or "")
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise BadRequest("Send the upload as multipart/form-data with a boundary (e.g. curl -F field=value)")
        self._handler = handler
        self._ended = False
        self._reset_part()
        callbacks = {
            "on_part_begin": self._reset_part,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        try:
            self._parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        except FormParserError as exc:
            raise BadRequest(f"Malformed multipart boundary: {exc}") from exc

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise BadRequest(f"Malformed multipart body: {exc}") from exc

    def close(self) -> None:
        self.feed(b"")
        if not self._ended:
            raise BadRequest("The multipart body ended before its closing boundary: the upload was cut short")

    # parser callbacks ---------------------------------------------------------------------------------------

    def _reset_part(self) -> None:
        self._headers: dict[bytes, bytes] = {}
        self._header_name = bytearray()
        self._header_data = bytearray()
        self._field: str | None = None
        self._value = bytearray()
        self._sink: Sink | None = None
        self._is_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_data += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_data)
        self._header_name, self._header_data = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise BadRequest("Each multipart part needs 'Content-Disposition: form-data; name=...'")
        self._field = _text(params[b"name"], "field name")
        if b"filename" in params:
            self._is_file = True
            filename = _text(params[b"filename"], "file name")
            self._sink = self._handler.file_begin(self._field, filename)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            if self._sink is not None:
                self._sink(memoryview(data)[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise BadRequest(f"Form field '{self._field}' is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._is_file:
            self._handler.file_end()
        elif self._field is not None:
            self._handler.field(self._field, _text(bytes(self._value), f"form field '{self._field}'"))

    def _end(self) -> None:
        self._ended = True


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The {what} is not valid UTF-8: send names and values as UTF-8") from exc
