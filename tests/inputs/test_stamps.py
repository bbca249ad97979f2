"""What a run records of each input file, and how a later step tells a file changed."""

import os

import fsspec

from pipeline.inputs.stamps import changed_files, digest_stamp, listed_stamp, shard_stamps


def test_a_local_file_is_known_by_its_size_and_modification_time(tmp_path):
    path = tmp_path / "doc.pdf"
    path.write_bytes(b"%PDF page one")
    os.utime(path, (1_700_000_000.5, 1_700_000_000.5))
    fs = fsspec.filesystem("file")
    assert listed_stamp(fs.info(str(path))) == "13 mtime 1700000000.5"


def test_a_store_that_lists_no_version_gets_a_digest_which_tells_a_same_size_rewrite(tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/in/doc.pdf", b"%PDF page one")
    stamp = listed_stamp(fs.info("/in/doc.pdf"))
    assert stamp == "13"  # the memory store lists a size and a creation time, no version
    recorded = shard_stamps(fs, ("/in/doc.pdf",), (stamp,), "/in")
    assert recorded == {"doc.pdf": digest_stamp(fs, "/in/doc.pdf")}
    assert recorded["doc.pdf"].startswith("13 sha256 ")
    assert changed_files(fs, recorded, ("/in/doc.pdf",), (stamp,), "/in") == []
    fs.pipe_file("/in/doc.pdf", b"%PDF page two")  # as long as before
    assert changed_files(fs, recorded, ("/in/doc.pdf",), (stamp,), "/in") == ["doc.pdf"]


def test_files_added_gone_or_of_another_version_are_named_and_a_move_compares_sizes():
    fs = fsspec.filesystem("memory")
    recorded = {"a.png": "10 etag abc", "b.png": "20 etag def"}
    paths, now = ("/in/a.png", "/in/c.png"), ("10 etag xyz", "5 etag q")
    assert changed_files(fs, recorded, paths, now, "/in") == ["a.png", "b.png", "c.png"]
    moved = changed_files(fs, {"a.png": "10 mtime 1.0"}, ("/x/a.png",), ("10 etag z",), "/x", True)
    assert moved == []
