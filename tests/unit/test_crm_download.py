"""hashing.py: one streamed pass gives both digests and the size; a retried download starts over; the size cap
stops the download before the excess is written; the temp file is private."""

from __future__ import annotations

import hashlib
import io
import stat
from pathlib import Path

import pytest

from docsync_cli.crm.download import FileTooLarge, HashingWriter, private_temp_file


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_one_pass_gives_md5_sha256_and_size_of_what_was_written() -> None:
    data = bytes(range(256)) * 1000 + b"tail"
    sink = io.BytesIO()
    writer = HashingWriter(sink)
    for chunk in chunks(data, 4096):
        assert writer.write(chunk) == len(chunk)
    content = writer.content()
    assert content.sha256 == hashlib.sha256(data).hexdigest()
    assert content.md5 == hashlib.md5(data).hexdigest()
    assert content.size == len(data)
    assert sink.getvalue() == data


def test_a_rewound_retry_hashes_only_the_second_pass() -> None:
    sink = io.BytesIO()
    writer = HashingWriter(sink)
    writer.write(b"half of a download that broke off")
    writer.seek(0)
    writer.truncate()  # what the transport does before it retries the download
    writer.write(b"the whole file")
    assert writer.content().sha256 == hashlib.sha256(b"the whole file").hexdigest()
    assert writer.content().size == len(b"the whole file")
    assert sink.getvalue() == b"the whole file"


def test_the_size_cap_stops_before_the_excess_is_written() -> None:
    sink = io.BytesIO()
    writer = HashingWriter(sink, max_bytes=10)
    writer.write(b"12345")
    writer.write(b"67890")  # exactly the cap is fine
    with pytest.raises(FileTooLarge) as caught:
        writer.write(b"1")
    assert (caught.value.size, caught.value.limit) == (11, 10)
    assert sink.getvalue() == b"1234567890"


def test_private_temp_file_is_0600_in_the_given_directory(tmp_path: Path) -> None:
    path, handle = private_temp_file(tmp_path, suffix=".pdf")
    try:
        assert path.parent == tmp_path and path.suffix == ".pdf" and path.name.startswith("docsync-")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        handle.write(b"x")
        handle.flush()
        assert path.read_bytes() == b"x"
    finally:
        handle.close()
        path.unlink()
