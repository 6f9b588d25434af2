"""hack/images/build.py end to end, without a cluster.

The images are built into a temporary directory, checked as docker-archive
tarballs, then their layers are unpacked into a directory and the programs run
inside it with chroot (root only): what a container would run, minus the
namespaces. Also runs `go vet` and `go test` for the testserver.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "hack" / "images"
BUILD = IMAGES_DIR / "build.py"
EXPECTED_REFS = {
    "pause": "kubefixtures.local/pause:3.10",
    "busybox": "kubefixtures.local/busybox:1.35",
    "redis": "kubefixtures.local/redis:7.0",
    "testserver": "kubefixtures.local/testserver:0.1",
}
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")


def run_build(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, str(BUILD), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,  # a machine without a Go build cache compiles the standard library
    )
    if check and result.returncode != 0:
        pytest.fail(f"build.py {args} failed ({result.returncode}):\n{result.stderr}")
    return result


def status_by_image(stdout: str) -> dict[str, str]:
    """{name: "built" | "up-to-date"} from build.py's one line per image."""
    return {line.split()[0]: line.split()[4] for line in stdout.splitlines()}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images")
    # Only these four: the catalog's images (tests/unit/test_catalog_images.py) need the
    # network (PyPI, npm) and have their own tests.
    result = run_build("--out", out, *EXPECTED_REFS)
    assert set(status_by_image(result.stdout)) == set(EXPECTED_REFS)
    return out


def read_archive(tarball: Path) -> tuple[dict[str, Any], dict[str, Any], list[bytes]]:
    """(manifest entry, config, layer tars) of a docker-archive tarball."""
    with tarfile.open(tarball) as archive:

        def member(name: str) -> bytes:
            handle = archive.extractfile(name)
            assert handle is not None, name
            return handle.read()

        manifest = json.loads(member("manifest.json"))
        assert len(manifest) == 1
        entry = manifest[0]
        config_bytes = member(entry["Config"])
        assert entry["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"
        layers = [member(name) for name in entry["Layers"]]
    return entry, json.loads(config_bytes), layers


def layer_diff_ids(layers: list[bytes]) -> list[str]:
    return ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]


@pytest.mark.parametrize("name", sorted(EXPECTED_REFS))
def test_tarball_is_a_valid_docker_archive(built: Path, name: str) -> None:
    entry, config, layers = read_archive(built / f"{name}.tar")
    assert entry["RepoTags"] == [EXPECTED_REFS[name]]
    assert config["os"] == "linux"
    assert config["architecture"] == "amd64"
    assert config["rootfs"] == {"type": "layers", "diff_ids": layer_diff_ids(layers)}
    assert len(config["history"]) == len(layers)
    assert config["config"]["Labels"]["org.opencontainers.image.version"]
    for layer in layers:
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names, key=lambda n: n.split("/")), "members must be sorted"
        assert len(set(names)) == len(names)
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", ""), m.name
            assert not m.name.startswith(("/", "./")), m.name
            assert ".wh." not in m.name, "no whiteouts: layers only add"
            assert m.isdir() or m.isfile() or m.issym(), m.name


def test_image_configs(built: Path) -> None:
    configs = {name: read_archive(built / f"{name}.tar")[1]["config"] for name in EXPECTED_REFS}
    assert configs["pause"]["Entrypoint"] == ["/pause"]
    assert configs["busybox"]["Cmd"] == ["sh"]
    assert configs["busybox"]["Env"] == [f"PATH={IMAGE_PATH}"]
    redis = configs["redis"]
    assert redis["Entrypoint"] == ["redis-server"]
    assert redis["Cmd"][:2] == ["--bind", "0.0.0.0"]
    assert redis["ExposedPorts"] == {"6379/tcp": {}}
    version = redis["Labels"]["org.opencontainers.image.version"]
    assert version.partition(":")[2].startswith("7.0."), version  # Debian's real version
    assert configs["testserver"]["Cmd"] == ["testserver", "both"]
    assert set(configs["testserver"]["ExposedPorts"]) == {"8080/tcp", "7000/tcp"}


def test_images_share_the_busybox_base_layer(built: Path) -> None:
    base = {
        name: read_archive(built / f"{name}.tar")[1]["rootfs"]["diff_ids"][0]
        for name in ("busybox", "redis", "testserver")
    }
    assert len(set(base.values())) == 1, base


def test_second_run_reuses_every_tarball(built: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in built.glob("*.tar")}
    result = run_build("--out", built, *EXPECTED_REFS)
    assert set(status_by_image(result.stdout).values()) == {"up-to-date"}
    assert {p.name: p.stat().st_mtime_ns for p in built.glob("*.tar")} == before
    assert result.stderr == ""  # nothing was compiled either


def test_builds_are_reproducible(built: Path, tmp_path: Path) -> None:
    """A separate output directory (so pause and testserver are compiled again)
    yields byte-identical tarballs."""
    run_build("--out", tmp_path, *EXPECTED_REFS)
    for name in EXPECTED_REFS:
        assert (tmp_path / f"{name}.tar").read_bytes() == (built / f"{name}.tar").read_bytes(), name


def test_list_prints_names_and_refs() -> None:
    result = run_build("--list")
    assert dict(line.split() for line in result.stdout.splitlines()).items() >= (
        EXPECTED_REFS.items()
    )


# --- running the images' programs in a chroot ---------------------------------


def unpack(tarball: Path, root: Path) -> Path:
    """Apply the image's layers in order into `root`, as a runtime would.

    Our layers never write through a symlink (build.py files everything under
    canonical paths); this checks that instead of trusting it.
    """
    _, _, layers = read_archive(tarball)
    for layer in layers:
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            for member in tar.getmembers():
                dest = root / member.name
                for parent in reversed(dest.relative_to(root).parents):
                    assert not (root / parent).is_symlink(), f"{member.name} via a symlink"
                if member.isdir():
                    dest.mkdir(exist_ok=True)
                    dest.chmod(member.mode)
                    continue
                if dest.is_symlink() or dest.exists():
                    dest.unlink()  # an upper layer replaces the file
                if member.issym():
                    dest.symlink_to(member.linkname)
                else:
                    source = tar.extractfile(member)
                    assert source is not None
                    with source, dest.open("xb") as target:
                        shutil.copyfileobj(source, target)
                    dest.chmod(member.mode)
    return root


def chroot(root: Path, *command: str, **env: str) -> list[str]:
    return ["env", "-i", f"PATH={IMAGE_PATH}", *(f"{k}={v}" for k, v in env.items()),
            shutil.which("chroot") or "/usr/sbin/chroot", str(root), *command]  # fmt: skip


def run_in(root: Path, *command: str) -> str:
    result = subprocess.run(
        chroot(root, *command), capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, f"{command}: {result.returncode} {result.stderr}"
    return result.stdout


@pytest.fixture
def busybox_root(built: Path, tmp_path: Path) -> Path:
    return unpack(built / "busybox.tar", tmp_path)


@needs_root
def test_busybox_runs_with_its_applets(busybox_root: Path) -> None:
    run_in(busybox_root, "/bin/busybox", "true")
    for applet in ("sh", "ls", "cat", "nc", "wget", "nslookup", "sleep", "httpd", "env"):
        assert run_in(busybox_root, "sh", "-c", f"command -v {applet}").strip(), applet
    assert run_in(busybox_root, "sh", "-c", "echo hi | cat") == "hi\n"
    assert oct((busybox_root / "tmp").stat().st_mode & 0o7777) == "0o1777"
    passwd = (busybox_root / "etc" / "passwd").read_text()
    assert passwd.startswith("root:x:0:0:")
    assert "hosts: files dns" in (busybox_root / "etc" / "nsswitch.conf").read_text()


@pytest.fixture
def redis_root(built: Path, tmp_path: Path) -> Path:
    return unpack(built / "redis.tar", tmp_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running(command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@needs_root
def test_redis_binaries_run(redis_root: Path) -> None:
    assert "v=7.0." in run_in(redis_root, "redis-server", "--version")
    assert run_in(redis_root, "redis-cli", "--version").startswith("redis-cli 7.0.")


@needs_root
def test_redis_serves_with_the_image_defaults(built: Path, redis_root: Path) -> None:
    container = read_archive(built / "redis.tar")[1]["config"]
    port = free_port()
    # The image's own entrypoint and args; only the port moves off 6379.
    command = [*container["Entrypoint"], *container["Cmd"], "--port", str(port)]
    with running(chroot(redis_root, "sh", "-c", 'cd "$0" && exec "$@"', "/data", *command)):
        deadline = time.monotonic() + 10
        while True:
            result = subprocess.run(
                chroot(redis_root, "redis-cli", "-p", str(port), "ping"),
                capture_output=True, text=True, check=False, timeout=10,
            )  # fmt: skip
            if result.stdout.strip() == "PONG" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert result.stdout.strip() == "PONG", result
        for setting, expected in (("protected-mode", "no"), ("save", ""), ("appendonly", "no")):
            got = run_in(redis_root, "redis-cli", "-p", str(port), "config", "get", setting)
            assert got.splitlines()[1:] == [expected], setting
        run_in(redis_root, "redis-cli", "-p", str(port), "shutdown", "nosave")


def read_lines(process: subprocess.Popen[bytes], count: int, timeout: float) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    buffer = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while len(lines) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"timed out; got {lines}"
            assert selector.select(remaining), f"timed out; got {lines}"
            chunk = os.read(process.stdout.fileno(), 4096)
            assert chunk, f"exited early: {lines}"
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += [line.decode() for line in complete]
    return lines


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def tcp_echo(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # half-close: the server must still answer
        received = bytearray()
        while chunk := sock.recv(1 << 16):
            received += chunk
    return bytes(received)


@needs_root
def test_testserver_serves_http_and_echo(built: Path, tmp_path: Path) -> None:
    root = unpack(built / "testserver.tar", tmp_path)
    command = chroot(
        root, "testserver", "both", "--http-port", "0", "--echo-port", "0", POD_NAME="web-1"
    )
    with running(command) as process:
        ports = {
            line.split()[1]: int(line.rpartition(":")[2])
            for line in read_lines(process, 2, timeout=10)
        }
        base = f"http://127.0.0.1:{ports['http']}"
        with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
            assert (response.status, response.read()) == (200, b"ok")
        with urllib.request.urlopen(f"{base}/bytes?n=300000", timeout=10) as response:
            assert response.read() == pattern(300000)
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            info = json.loads(response.read())
        assert info["pod"] == "web-1"
        assert info["hostname"]
        body = os.urandom(100_000)
        request = urllib.request.Request(f"{base}/echo", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.read() == body
        big = pattern(5 << 20)
        assert tcp_echo(ports["echo"], big) == big

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 2, "SIGTERM must stop it promptly"


# --- pause: PID 1 of a PID namespace ------------------------------------------


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append((int(stat.parent.name), fields[0]))
    return found


def wait_for(condition: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


@needs_root
def test_pause_reaps_orphans_and_exits_on_sigterm(built: Path, tmp_path: Path) -> None:
    root = unpack(built / "pause.tar", tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["pause"]
    with running(["unshare", "--pid", "--fork", "chroot", str(root), "/pause"]) as unshare:
        # unshare forks pause as PID 1 of the new namespace.
        pause = wait_for(lambda: [p for p, _ in children_of(unshare.pid)], 5)
        assert pause, "pause did not start"
        pause_pid = pause[0]
        # A process whose parent exits is re-parented to pause, which must reap it.
        subprocess.run(
            ["nsenter", "--target", str(pause_pid), "--pid", "--",
             "sh", "-c", "sleep 0.3 & exit 0"],
            check=True, timeout=10,
        )  # fmt: skip
        assert wait_for(lambda: children_of(pause_pid), 2), "the orphan was not re-parented"
        assert wait_for(lambda: not children_of(pause_pid), 5), children_of(pause_pid)

        os.kill(pause_pid, signal.SIGTERM)
        assert unshare.wait(timeout=5) == 0


# --- the testserver's own Go checks ---------------------------------------------


def go_command() -> str:
    found = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    assert found, "go is needed to build the testserver image"
    return found


@pytest.mark.parametrize("check", [["vet", "./..."], ["test", "-count=1", "./..."]])
def test_testserver_go_checks(check: list[str]) -> None:
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOFLAGS": "-buildvcs=false",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
    }
    result = subprocess.run(
        [go_command(), *check],
        cwd=IMAGES_DIR / "testserver",
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
