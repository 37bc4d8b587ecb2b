"""``gluonfuse data fetch``: download the official archives (checked, resumable), then prepare them.

A download goes to ``FILE.part``; an interrupted one is resumed with an HTTP Range request (a server
that ignores Range sends the whole file again, which is also handled). The file gets its final name only
after its MD5 matches the published checksum; a mismatch removes the download. The base URL can be
changed with ``--base-url`` or ``GLUONFUSE_DATA_URL`` (a mirror serving the same file names).
"""
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request

from gluonfuse.errors import DataError, did_you_mean

ENV_URL = "GLUONFUSE_DATA_URL"

# name -> (default base URL, [(file, published md5)], [extra files with --with-extra])
SOURCES = {
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",
                [("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")], []),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/",
                 [("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")], []),
    "svhn": ("http://ufldl.stanford.edu/housenumbers/",
             [("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
              ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")],
             [("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7")]),
}

_CHUNK = 1 << 20


def md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def download(url, dest, md5, progress=True, timeout=60, echo=print):
    """Download ``url`` to ``dest`` unless a file with checksum ``md5`` is already there.

    Resumes ``dest.part`` when present. Returns ``dest``. DataError on a network failure or a
    checksum mismatch (the mismatching download is removed).
    """
    if os.path.exists(dest):
        if md5_file(dest) == md5:
            echo(f"{dest}: already downloaded, checksum OK")
            return dest
        raise DataError(f"{dest} exists but its MD5 is not {md5}; remove it to download again")
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "gluonfuse-data-fetch"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the partial file is already complete
            resp = None
        else:
            raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from None
    if resp is not None:
        with resp:
            resumed = have and resp.status == 206 and _range_start(resp) == have
            if have:
                echo(f"{dest}: resuming at byte {have}" if resumed else
                     f"{dest}: the server does not resume; downloading again from the start")
            start = have if resumed else 0
            length = resp.headers.get("Content-Length")
            total = start + int(length) if length and length.isdigit() else None
            _stream(resp, part, "ab" if resumed else "wb", start, total, os.path.basename(dest),
                    progress, url)
    got = md5_file(part)
    if got != md5:
        os.remove(part)
        raise DataError(f"{url}: checksum mismatch (MD5 {got}, expected {md5}); the download was "
                        f"removed, run the command again")
    os.replace(part, dest)
    echo(f"{dest}: downloaded, checksum OK")
    return dest


def _range_start(resp):
    # Content-Range: bytes START-END/TOTAL
    value = resp.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def _stream(resp, part, mode, start, total, desc, progress, url):
    from tqdm import tqdm

    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=desc, file=sys.stderr,
               disable=None if progress else True, leave=False)
    try:
        with open(part, mode) as f:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # keep what we have, to resume
                    raise DataError(f"download of {url} broke off at byte {f.tell()} ({exc}); "
                                    f"run the command again to resume") from None
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
            if total is not None and f.tell() < total:
                raise DataError(f"download of {url} broke off at byte {f.tell()} of {total}; "
                                f"run the command again to resume")
    finally:
        bar.close()


def fetch(name, out=None, download_dir=None, base_url=None, checksums=None, with_extra=False,
          coarse=False, num_thread=None, overwrite=False, progress=True, echo=print):
    """Download dataset ``name`` (cifar10, cifar100, svhn) and prepare it into ``out``.

    ``checksums`` ({file: md5}) replaces published checksums, for a mirror that serves other files.
    Returns the meta.json dict.
    """
    from gluonfuse.data.prepare import check_target, prepare

    if name not in SOURCES:
        raise ValueError(f"cannot fetch {name!r}; fetch knows {', '.join(SOURCES)}."
                         + did_you_mean(name, SOURCES))
    if with_extra and name != "svhn":
        raise ValueError("--with-extra applies to svhn only")
    default_url, files, extra = SOURCES[name]
    base = base_url or os.environ.get(ENV_URL) or default_url
    if not base.startswith(("http://", "https://", "file://")):
        raise ValueError(f"base URL must start with http://, https:// or file://, got {base!r}")
    checksums = dict(checksums or {})
    files = files + (extra if with_extra else [])
    unknown = sorted(set(checksums) - {f for f, _ in files})
    if unknown:
        raise ValueError(f"--md5 names {', '.join(unknown)}, which {name} does not download; its files: "
                         + ", ".join(f for f, _ in files))
    download_dir = download_dir or os.path.join("data", "downloads")
    out = out or os.path.join("data", name)
    check_target(out, overwrite)  # before downloading anything
    for fname, md5 in files:
        download(base.rstrip("/") + "/" + fname, os.path.join(download_dir, fname),
                 checksums.get(fname, md5), progress=progress, echo=echo)
    src = os.path.join(download_dir, files[0][0]) if name.startswith("cifar") else download_dir
    return prepare(name, src=src, out=out, coarse=coarse, with_extra=with_extra,
                   num_thread=num_thread, overwrite=overwrite, progress=progress, echo=echo)
