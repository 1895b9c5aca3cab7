"""Tests of bench/fetch.py and `bench fetch-weights`, against a loopback HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import sys
import threading

import pytest

from bench import fetch, metrics
from bench.cli import main
from bench.errors import BenchError

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes standing in for a checkpoint
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture()
def server(tmp_path, monkeypatch):
    """A loopback server for `served/`; yields its base URL and a list of the paths it was asked for."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # a proxy must not see (or swallow) loopback requests
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    root = tmp_path / "served"
    root.mkdir()
    (root / "alexnet-owt-0123abcd.pth").write_bytes(PAYLOAD)
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", asked
    httpd.shutdown()
    httpd.server_close()


def _weights(base: str, dest, sha256: str = DIGEST, size: int = len(PAYLOAD)) -> fetch.Weights:
    return fetch.Weights(name="lpips", what="a test file", url=f"{base}/alexnet-owt-0123abcd.pth",
                         sha256=sha256, size=size, destination=lambda: dest)


def _left(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_a_matching_download_is_put_in_place_once(server, tmp_path) -> None:
    base, asked = server
    dest = tmp_path / "home" / "hub" / "checkpoints" / "alexnet-owt-0123abcd.pth"
    path, downloaded = fetch.fetch(_weights(base, dest))
    assert (path, downloaded) == (dest, True) and dest.read_bytes() == PAYLOAD
    assert _left(tmp_path / "home") == [dest.name]  # no temporary left beside it
    assert fetch.fetch(_weights(base, dest)) == (dest, False)  # already right: not downloaded again
    assert asked == ["/alexnet-owt-0123abcd.pth"]


def test_a_wrong_hash_leaves_no_file(server, tmp_path) -> None:
    base, _ = server
    dest = tmp_path / "home" / "hub" / "checkpoints" / "alexnet-owt-0123abcd.pth"
    wrong = "0" * 64
    with pytest.raises(BenchError, match=f"sha256 {DIGEST}, expected {wrong}; nothing was written") as err:
        fetch.fetch(_weights(base, dest, sha256=wrong))
    assert "\n" not in str(err.value)
    assert not dest.exists() and _left(tmp_path / "home") == []


def test_an_oversized_or_failed_download_leaves_no_file(server, tmp_path) -> None:
    base, _ = server
    dest = tmp_path / "home" / "ckpt.pth"
    with pytest.raises(BenchError, match="more than the 100 bytes"):
        fetch.fetch(_weights(base, dest, size=100))
    gone = dataclasses.replace(_weights(base, dest), url=f"{base}/missing.pth")  # a 404
    with pytest.raises(BenchError, match="download failed .*nothing was written"):
        fetch.fetch(gone)
    assert _left(tmp_path / "home") == []


def test_another_file_in_the_way_is_refused_and_kept(server, tmp_path) -> None:
    base, asked = server
    dest = tmp_path / "ckpt.pth"
    dest.write_bytes(b"the user's own file")
    with pytest.raises(BenchError, match="already there but not a test file.*move it away"):
        fetch.fetch(_weights(base, dest))
    assert dest.read_bytes() == b"the user's own file" and asked == []


def test_the_alexnet_entry_is_torchvisions_file_where_lpips_reads_it(tmp_path, monkeypatch) -> None:
    entry = fetch.WEIGHTS["lpips"]
    assert entry.url == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    assert entry.url.endswith("/" + metrics.ALEXNET_FILE)
    # torch.hub's rule: the hex in the file name is a prefix of the file's SHA-256.
    assert fetch.hash_prefix(entry.url) == "7be5be79" and entry.sha256.startswith("7be5be79")
    assert len(entry.sha256) == 64 and entry.sha256 == entry.sha256.lower()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert entry.destination() == metrics.alexnet_cache_path() == tmp_path / "hub" / "checkpoints" / (
        "alexnet-owt-7be5be79.pth")
    assert fetch.hash_prefix("http://x/resnet50.pth") is None


def test_the_command_fetches_into_torch_home_and_refuses_a_bad_hash(server, tmp_path, monkeypatch,
                                                                    capsys) -> None:
    base, _ = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    good = dataclasses.replace(_weights(base, None), destination=metrics.alexnet_cache_path)
    monkeypatch.setitem(fetch.WEIGHTS, "lpips", dataclasses.replace(good, sha256="f" * 64))
    monkeypatch.setattr(sys, "argv", ["bench", "fetch-weights", "lpips"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "nothing was written" in err
    assert not (tmp_path / "torch").exists() or _left(tmp_path / "torch") == []
    monkeypatch.setitem(fetch.WEIGHTS, "lpips", good)
    main()
    assert metrics.alexnet_cache_path().read_bytes() == PAYLOAD
    assert "wrote" in capsys.readouterr().out
