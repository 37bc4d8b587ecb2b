"""`gluonfuse data fetch` against a local HTTP server on 127.0.0.1 (never any other address):
download, checksum, resume with Range, servers that ignore Range, broken connections."""
import hashlib
import http.server
import os
import threading

import pytest

import datagen
from gluonfuse.data.meta import read_meta


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        path = os.path.join(srv.root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            data = f.read()
        start = 0
        ask = self.headers.get("Range")
        if ask and srv.ranges:
            start = int(ask.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_after is not None:  # the connection drops part way
            body, srv.cut_after = body[:srv.cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.root, srv.log, srv.ranges, srv.cut_after = str(root), [], True, None
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/mirror"
    os.makedirs(root / "mirror")
    srv.files = root / "mirror"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.fixture
def cifar(server):
    archive = server.files / "cifar-10-python.tar.gz"
    datagen.cifar10_archive(archive, per_batch=300)  # ~1 MB, so a download can break part way
    return archive, md5(archive)


def fetch_args(tmp_path, server, digest, *more):
    return ["data", "fetch", "cifar10", "--base-url", server.url, "--md5",
            f"cifar-10-python.tar.gz={digest}", "--download-dir", tmp_path / "dl",
            "--out", tmp_path / "cifar10", "--quiet", *more]


def test_fetch_downloads_checks_and_prepares(tmp_path, server, cifar, cli):
    archive, digest = cifar
    res = cli(*fetch_args(tmp_path, server, digest))
    assert res.exit_code == 0, res.output
    assert "downloaded, checksum OK" in res.output
    assert (tmp_path / "dl" / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    assert read_meta(tmp_path / "cifar10")["splits"]["train"]["count"] == 1500
    assert server.log == [("/mirror/cifar-10-python.tar.gz", None)]
    # a second run finds the archive and refuses to overwrite the prepared dataset
    res = cli(*fetch_args(tmp_path, server, digest))
    assert res.exit_code == 2 and "already holds a prepared dataset" in res.output
    res = cli(*fetch_args(tmp_path, server, digest, "--overwrite"))
    assert res.exit_code == 0 and "already downloaded, checksum OK" in res.output
    assert len(server.log) == 1


def test_broken_download_resumes_with_range(tmp_path, server, cifar, cli):
    archive, digest = cifar
    server.cut_after = 200_000
    res = cli(*fetch_args(tmp_path, server, digest))
    assert res.exit_code == 1 and "broke off at byte 200000" in res.output and "resume" in res.output
    assert not (tmp_path / "dl" / "cifar-10-python.tar.gz").exists()
    assert os.path.getsize(tmp_path / "dl" / "cifar-10-python.tar.gz.part") == 200_000
    assert not (tmp_path / "cifar10" / "meta.json").exists()
    res = cli(*fetch_args(tmp_path, server, digest))
    assert res.exit_code == 0, res.output
    assert "resuming at byte 200000" in res.output
    assert server.log[-1] == ("/mirror/cifar-10-python.tar.gz", "bytes=200000-")
    assert (tmp_path / "dl" / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()


def test_server_without_range_starts_again(tmp_path, server, cifar, cli):
    archive, digest = cifar
    server.ranges = False
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "cifar-10-python.tar.gz.part").write_bytes(b"x" * 5000)  # stale junk
    res = cli(*fetch_args(tmp_path, server, digest))
    assert res.exit_code == 0, res.output
    assert "does not resume; downloading again from the start" in res.output
    assert (tmp_path / "dl" / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()


def test_checksum_mismatch_removes_download(tmp_path, server, cifar, monkeypatch, cli):
    # no --md5: the published checksum of the real archive cannot match the generated one
    monkeypatch.setenv("GLUONFUSE_DATA_URL", server.url)
    res = cli("data", "fetch", "cifar10", "--download-dir", tmp_path / "dl", "--out", tmp_path / "c",
              "--quiet")
    assert res.exit_code == 1
    assert "checksum mismatch" in res.output and "expected c58f30108f718f92721af3b95e74349a" in res.output
    assert os.listdir(tmp_path / "dl") == [] and not (tmp_path / "c").exists()
    assert server.log == [("/mirror/cifar-10-python.tar.gz", None)]  # the env var chose the server


def test_svhn_with_extra_fetches_three_files(tmp_path, server, cli):
    datagen.svhn_mats(server.files, n_train=4, n_test=3, n_extra=5)
    md5s = [f"--md5={n}_32x32.mat={md5(server.files / f'{n}_32x32.mat')}" for n in ("train", "test", "extra")]
    res = cli("data", "fetch", "svhn", "--with-extra", "--base-url", server.url, *md5s,
              "--download-dir", tmp_path / "dl", "--out", tmp_path / "svhn", "--quiet")
    assert res.exit_code == 0, res.output
    assert sorted(p for p, _ in server.log) == [f"/mirror/{n}_32x32.mat" for n in ("extra", "test", "train")]
    assert read_meta(tmp_path / "svhn")["splits"]["train"]["count"] == 9


@pytest.mark.parametrize("args, code, message", [
    (["cifar-10"], 2, "Did you mean 'cifar10'"),
    (["mnist"], 2, "cannot fetch 'mnist'"),
    (["cifar10", "--base-url", "ftp://x"], 2, "base URL must start with http://"),
    (["cifar10", "--md5", "nonsense"], 2, "--md5 expects FILE=MD5"),
    (["cifar10", "--md5", "other.tar.gz=" + "0" * 32], 2, "--md5 names other.tar.gz"),
    (["cifar10", "--with-extra"], 2, "--with-extra applies to svhn only"),
])
def test_fetch_bad_arguments(tmp_path, cli, args, code, message):
    res = cli("data", "fetch", *args, "--download-dir", tmp_path, "--out", tmp_path / "o")
    assert res.exit_code == code
    assert message in res.output and len(res.output.strip().splitlines()) == 1
