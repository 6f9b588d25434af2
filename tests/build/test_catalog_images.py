"""The service catalog's local images (postgres, moto, mountebank) and the Python base image
for Dockerfiles, without a cluster.

Each image is built (into $KUBEFIXTURES_IMAGES_DIR, the cache `make images` fills, so a
run after `make images` builds nothing), unpacked, and run in a chroot as its own non-root
user, with /dev and /proc mounted in a private mount namespace that dies with the process.
The test process then talks to it with the real client library: psycopg, boto3, httpx.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "hack" / "images" / "build.py"
IMAGES = ("postgres", "moto", "mountebank", "python")
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mounts need root")


@pytest.fixture(scope="module")
def images_dir() -> Path:
    out = Path(
        os.environ.get("KUBEFIXTURES_IMAGES_DIR") or Path.home() / ".cache/kubefixtures/images"
    )
    result = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out), *IMAGES],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,  # the first build downloads from PyPI and npm
    )
    assert result.returncode == 0, result.stderr
    return out


def read_archive(tarball: Path) -> tuple[dict[str, Any], list[bytes]]:
    with tarfile.open(tarball) as archive:

        def member(name: str) -> bytes:
            handle = archive.extractfile(name)
            assert handle is not None, name
            return handle.read()

        (entry,) = json.loads(member("manifest.json"))
        config = member(entry["Config"])
        assert entry["Config"] == hashlib.sha256(config).hexdigest() + ".json"
        return json.loads(config), [member(name) for name in entry["Layers"]]


def unpack(tarball: Path, root: Path) -> dict[str, Any]:
    """Apply the layers in order into ``root``; returns the image's container config."""
    config, layers = read_archive(tarball)
    for layer in layers:
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            for member in tar.getmembers():
                dest = root / member.name
                if member.isdir():
                    dest.mkdir(exist_ok=True)
                    dest.chmod(member.mode)
                    continue
                if dest.is_symlink() or dest.exists():
                    dest.unlink()
                if member.issym():
                    dest.symlink_to(member.linkname)
                else:
                    source = tar.extractfile(member)
                    assert source is not None
                    with source, dest.open("xb") as target:
                        shutil.copyfileobj(source, target)
                    dest.chmod(member.mode)
    container: dict[str, Any] = config["config"]
    return container


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def in_image(root: Path, user: str, workdir: str, env: list[str], *command: str) -> list[str]:
    """A command line that runs ``command`` as the image would: its user, env and workdir."""
    script = (
        'mount --bind /dev "$0/dev" && mount -t proc proc "$0/proc" && '
        'exec chroot --userspec="$1" "$0" /bin/sh -c \'cd "$0" && exec "$@"\' "$2" "${@:3}"'
    )
    return [
        "env", "-i", *env,
        "unshare", "--mount", "--propagation", "private", "--",
        "/bin/bash", "-c", script, str(root), user, workdir or "/", *command,
    ]  # fmt: skip


@contextlib.contextmanager
def running(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def wait_until(check: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited {process.returncode}: {log.read_text()[-2000:]}"
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    pytest.fail(f"not ready after 60 s: {log.read_text()[-2000:]}")


def image_user(container: dict[str, Any]) -> str:
    user = str(container.get("User") or "0:0")
    return "999:999" if user == "postgres" else user


@needs_root
def test_postgres_initialises_and_serves_with_a_password(images_dir: Path, tmp_path: Path) -> None:
    import psycopg

    root = tmp_path / "root"
    root.mkdir()
    container = unpack(images_dir / "postgres.tar", root)
    assert container["Entrypoint"] == ["docker-entrypoint.sh"]
    assert container["Cmd"] == ["postgres"]
    assert container["User"] == "postgres"
    port = free_port()
    password = "s3cret-" + os.urandom(4).hex()
    env = [
        *container["Env"],
        f"POSTGRES_PASSWORD={password}",
        "POSTGRES_USER=shop",
        "POSTGRES_DB=orders",
        "PGDATA=/var/lib/postgresql/data/pgdata",
    ]
    (root / "docker-entrypoint-initdb.d" / "schema.sql").write_text(
        "CREATE TABLE seeded (id int);\nINSERT INTO seeded VALUES (42);\n"
    )
    command = in_image(
        root, image_user(container), "/", env,
        *container["Entrypoint"], *container["Cmd"],
        "-p", str(port), "-c", "unix_socket_directories=/tmp",
    )  # fmt: skip
    log = tmp_path / "postgres.log"
    dsn = f"host=127.0.0.1 port={port} user=shop dbname=orders connect_timeout=2"
    with running(command, log) as process:
        wait_until(
            lambda: bool(psycopg.connect(dsn, password=password).close() or True), process, log
        )
        with psycopg.connect(dsn, password=password) as connection:
            assert connection.execute("SELECT id FROM seeded").fetchone() == (42,)
            version = connection.execute("SHOW server_version").fetchone()
            assert version is not None
            assert str(version[0]).startswith("15.")
            owner = connection.execute("SELECT current_user").fetchone()
            assert owner == ("shop",)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(dsn, password="wrong").close()
    output = log.read_text()
    assert password not in output
    # Non-root: the data directory belongs to uid 999 with mode 0700.
    data = root / "var/lib/postgresql/data/pgdata"
    assert data.stat().st_uid == 999
    assert oct(data.stat().st_mode & 0o777) == "0o700"


@needs_root
def test_the_python_base_image_has_pip_certificates_and_what_wheels_link(
    images_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    container = unpack(images_dir / "python.tar", root)
    assert container["Cmd"] == ["python"]
    check = (
        "import ctypes, ssl, pip; "
        "[ctypes.CDLL(name) for name in ('libpthread.so.0', 'libdl.so.2', 'libresolv.so.2')]; "
        "print(pip.__version__, ssl.create_default_context().cert_store_stats()['x509_ca'] > 0)"
    )
    command = in_image(root, "0:0", "/", container["Env"], "python", "-c", check)
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    version, trusts = result.stdout.split()
    assert (
        version
        == (REPO / "hack/images/python/requirements.txt").read_text().split("==")[-1].strip()
    )
    assert trusts == "True"  # SSL_CERT_FILE names the bundle: pip reaches PyPI through a proxy


@needs_root
def test_moto_serves_s3(images_dir: Path, tmp_path: Path) -> None:
    import boto3

    root = tmp_path / "root"
    root.mkdir()
    container = unpack(images_dir / "moto.tar", root)
    assert container["Entrypoint"] == ["/usr/local/bin/moto_server", "-H", "0.0.0.0"]
    port = free_port()
    command = in_image(
        root, image_user(container), container.get("WorkingDir", "/"), container["Env"],
        *container["Entrypoint"], "-p", str(port),
    )  # fmt: skip
    log = tmp_path / "moto.log"
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with running(command, log) as process:
        wait_until(lambda: s3.list_buckets()["Buckets"] == [], process, log)
        s3.create_bucket(Bucket="photos")
        s3.put_object(Bucket="photos", Key="cat.txt", Body=b"meow")
        assert s3.get_object(Bucket="photos", Key="cat.txt")["Body"].read() == b"meow"


@needs_root
def test_mountebank_serves_an_imposter(images_dir: Path, tmp_path: Path) -> None:
    import httpx

    root = tmp_path / "root"
    root.mkdir()
    container = unpack(images_dir / "mountebank.tar", root)
    assert (container["Entrypoint"], container["Cmd"]) == (["mb"], ["start"])
    port, imposter_port = free_port(), free_port()
    command = in_image(
        root, image_user(container), container["WorkingDir"], container["Env"],
        *container["Entrypoint"], *container["Cmd"], "--port", str(port),
    )  # fmt: skip
    log = tmp_path / "mb.log"
    admin = f"http://127.0.0.1:{port}"
    with running(command, log) as process:
        wait_until(lambda: httpx.get(f"{admin}/imposters").status_code == 200, process, log)
        imposter = {
            "protocol": "http",
            "port": imposter_port,
            "stubs": [{"responses": [{"is": {"statusCode": 201, "body": "stubbed"}}]}],
        }
        assert httpx.post(f"{admin}/imposters", json=imposter).status_code == 201
        response = httpx.get(f"http://127.0.0.1:{imposter_port}/anything")
        assert (response.status_code, response.text) == (201, "stubbed")
        assert httpx.delete(f"{admin}/imposters/{imposter_port}").status_code == 200


TREE_RECIPE = """
[artifacts.tree]
sources = ["tree.sh"]
command = ["sh", "tree.sh", "{out}"]

[layers.app]
artifacts = { "/opt/app" = "tree" }

[images.app]
ref = "example.local/app:1"
layers = ["app"]
version = "1"
"""

TREE_SCRIPT = """
set -eu
mkdir -p "$1/bin" "$1/lib"
printf 'print("hi")\\n' > "$1/lib/main.py"
printf '#!/bin/sh\\n' > "$1/bin/run"
chmod 0755 "$1/bin/run"
chmod 0600 "$1/lib/main.py"
ln -s ../lib/main.py "$1/bin/main"
"""


def test_a_directory_artifact_is_placed_whole(tmp_path: Path) -> None:
    """The kit's directory artifacts (pip/npm trees): modes and inner symlinks kept."""
    (tmp_path / "recipes.toml").write_text(TREE_RECIPE)
    (tmp_path / "tree.sh").write_text(TREE_SCRIPT)
    out = tmp_path / "out"
    build = [sys.executable, str(BUILD), "--recipes", str(tmp_path / "recipes.toml")]
    result = subprocess.run(
        [*build, "--out", str(out)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    _, layers = read_archive(out / "app.tar")
    with tarfile.open(fileobj=io.BytesIO(layers[0])) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert members["opt/app"].isdir()
    assert members["opt/app/bin/run"].mode == 0o755
    assert members["opt/app/lib/main.py"].mode == 0o600
    assert members["opt/app/bin/main"].issym()
    assert members["opt/app/bin/main"].linkname == "../lib/main.py"
    # Unchanged inputs: neither the tree nor the image is made again.
    again = subprocess.run([*build, "--out", str(out)], capture_output=True, text=True, check=False)
    assert "up-to-date" in again.stdout
    assert again.stderr == ""
