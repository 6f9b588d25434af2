"""The logic of hack/images (imagekit) and build.py's behaviour on small recipes:
path resolution, ldd parsing, versions, recipe errors, cache invalidation."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

IMAGES_DIR = Path(__file__).resolve().parents[2] / "hack" / "images"
sys.path.insert(0, str(IMAGES_DIR))

from imagekit.errors import BuildError  # noqa: E402
from imagekit.host import upstream_version  # noqa: E402
from imagekit.hostfs import add_host_path, parse_ldd  # noqa: E402
from imagekit.progress import Heartbeat  # noqa: E402
from imagekit.recipes import load_recipes  # noqa: E402
from imagekit.rootfs import Rootfs, directory, inline_file, symlink  # noqa: E402

# --- the planned file tree ----------------------------------------------------


def merged_usr() -> Rootfs:
    fs = Rootfs()
    fs.new_layer()
    fs.put("/usr/lib", directory())
    fs.put("/lib", symlink("usr/lib"))
    fs.put("/lib64", symlink("/usr/lib64"))
    return fs


def test_paths_through_image_symlinks_become_canonical() -> None:
    fs = merged_usr()
    assert fs.put("/lib/x86_64-linux-gnu/libc.so.6", inline_file(b"libc")) == (
        "usr/lib/x86_64-linux-gnu/libc.so.6"
    )
    assert fs.put("/lib64/ld.so", inline_file(b"ld")) == "usr/lib64/ld.so"
    assert fs.exists("/lib/x86_64-linux-gnu/libc.so.6")
    assert fs.exists("/usr/lib/x86_64-linux-gnu/../x86_64-linux-gnu/libc.so.6")
    assert fs.top["usr/lib64"].kind == "dir"  # created on the way, mode 0755
    assert fs.top["usr/lib64"].mode == 0o755


def test_adding_the_same_thing_twice_is_a_no_op_but_conflicts_fail() -> None:
    fs = merged_usr()
    fs.put("/etc/a", inline_file(b"x"))
    fs.put("/etc/a", inline_file(b"x"))
    with pytest.raises(BuildError, match=r"/etc/a: conflicts with the file already at /etc/a"):
        fs.put("/etc/a", inline_file(b"y"))
    with pytest.raises(BuildError, match="conflicts with the symlink"):
        fs.put("/lib", directory())


def test_upper_layers_may_replace_files_and_modes_but_not_kinds() -> None:
    fs = merged_usr()
    fs.put("/etc/a", inline_file(b"x"))
    fs.put("/tmp", directory())
    fs.new_layer()
    fs.put("/etc/a", inline_file(b"y"))  # shadows the lower file
    fs.put("/tmp", directory(0o1777))
    assert fs.lookup("etc/a") == inline_file(b"y")
    assert fs.top["tmp"].mode == 0o1777
    with pytest.raises(BuildError, match="conflicts"):
        fs.put("/etc/a", symlink("b"))


def test_symlink_loops_and_files_as_directories_are_reported() -> None:
    fs = Rootfs()
    fs.new_layer()
    fs.put("/a", symlink("b"))
    fs.put("/b", symlink("a"))
    with pytest.raises(BuildError, match="too many levels of symbolic links"):
        fs.put("/a/file", inline_file(b""))
    fs.put("/f", inline_file(b""))
    with pytest.raises(BuildError, match="/f: is a file in the image"):
        fs.put("/f/x", inline_file(b""))


def test_host_symlink_chains_are_copied(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "tool-1.2").write_bytes(b"#!")
    (tmp_path / "real" / "tool").symlink_to("tool-1.2")
    (tmp_path / "alias").symlink_to("real")
    fs = Rootfs()
    fs.new_layer()
    add_host_path(fs, f"{tmp_path}/alias/tool")
    base = str(tmp_path).lstrip("/")
    assert fs.top[f"{base}/alias"] == symlink("real")
    assert fs.top[f"{base}/real/tool"] == symlink("tool-1.2")
    assert fs.top[f"{base}/real/tool-1.2"].digest
    with pytest.raises(BuildError, match="No such file or directory"):
        add_host_path(fs, f"{tmp_path}/missing")


# --- ldd and versions ---------------------------------------------------------

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd2b5f5000)
\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f2a6c4a1000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2a6c2c0000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f2a6c6f0000)
"""


def test_parse_ldd_keeps_libraries_and_loader_but_not_the_vdso() -> None:
    assert parse_ldd("/usr/bin/x", LDD_OUTPUT) == [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib/x86_64-linux-gnu/libssl.so.3",
        "/lib64/ld-linux-x86-64.so.2",
    ]
    assert parse_ldd("/bin/busybox", "\tstatically linked\n") == []


def test_parse_ldd_reports_a_missing_library() -> None:
    with pytest.raises(BuildError, match=r"/usr/bin/x: needs libfoo\.so\.1, which ldd cannot find"):
        parse_ldd("/usr/bin/x", "\tlibfoo.so.1 => not found\n")


@pytest.mark.parametrize(
    ("debian", "upstream"),
    [
        ("5:7.0.15-1~deb12u10", "7.0.15"),
        ("1:1.35.0-4+deb12u1+b1", "1.35.0"),
        ("2.36-9+deb12u14", "2.36"),
        ("1.0", "1.0"),
    ],
)
def test_upstream_version(debian: str, upstream: str) -> None:
    assert upstream_version(debian) == upstream


# --- recipes ------------------------------------------------------------------


def test_the_shipped_recipes_load() -> None:
    recipes = load_recipes(IMAGES_DIR / "recipes.toml")
    assert set(recipes.images) >= {"pause", "busybox", "redis", "testserver"}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[images.x]\nref = "r/x:1"\nlayers = ["l"]\nversion = "1"\nentrypiont = []\n'
            "[layers.l]\n",
            "recipes.toml: images.x.entrypiont: unknown key",
        ),
        (
            '[images.x]\nref = "r/x"\nlayers = ["l"]\nversion = "1"\n[layers.l]\n',
            "recipes.toml: images.x.ref: 'r/x' needs an explicit tag",
        ),
        (
            '[images.x]\nref = "r/x:1"\nlayers = ["nope"]\nversion = "1"\n[layers.l]\n',
            "recipes.toml: images.x.layers: no layer named 'nope'",
        ),
        (
            '[layers.l]\ndirs = [{ path = "/tmp", mode = "1777" }]\n',
            "recipes.toml: layers.l.dirs[0].mode: expected an octal integer",
        ),
        (
            '[layers.l]\nfiles = ["relative/path"]\n',
            "recipes.toml: layers.l.files: 'relative/path' must be an absolute path",
        ),
        (
            '[layers.l]\nartifacts = { "/x" = "missing" }\n',
            "recipes.toml: layers.l.artifacts: /x names unknown artifact 'missing'",
        ),
        ("[images\n", "recipes.toml: invalid TOML"),
    ],
)
def test_recipe_mistakes_name_file_and_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "recipes.toml"
    path.write_text(toml)
    with pytest.raises(BuildError) as caught:
        load_recipes(path)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


# --- build.py on a small recipe -----------------------------------------------


def build(recipes: Path, out: Path, *names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, IMAGES_DIR / "build.py", "--recipes", recipes, "--out", out, *names],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def small_recipe(tmp_path: Path) -> Path:
    (tmp_path / "payload").write_text("one\n")
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(
        f"""
[layers.l]
dirs = [{{ path = "/tmp", mode = 0o1777 }}]
files = ["{tmp_path}/payload"]
text = {{ "/etc/motd" = "hello\\n" }}
symlinks = {{ "/motd" = "etc/motd" }}

[images.small]
ref = "kubefixtures.local/small:1"
layers = ["l"]
cmd = ["cat", "/motd"]
version = "1"
"""
    )
    return recipes


def test_build_skips_unchanged_and_rebuilds_changed_inputs(
    small_recipe: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = build(small_recipe, out)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[:2] == ["small", "kubefixtures.local/small:1"]
    assert first.stdout.split()[4] == "built"
    tarball = out / "small.tar"
    original = tarball.read_bytes()
    assert (out / "small.tar.key").read_text().strip()

    assert build(small_recipe, out).stdout.split()[4] == "up-to-date"

    (tmp_path / "payload").write_text("two\n")  # an input file changed
    assert build(small_recipe, out).stdout.split()[4] == "built"
    assert tarball.read_bytes() != original

    small_recipe.write_text(small_recipe.read_text().replace("hello", "bye"))  # the recipe
    assert build(small_recipe, out).stdout.split()[4] == "built"

    tarball.write_bytes(b"damaged")  # the key alone does not vouch for a tarball
    (out / "small.tar.key").unlink()
    assert build(small_recipe, out).stdout.split()[4] == "built"
    with tarfile.open(tarball) as archive:
        assert "manifest.json" in archive.getnames()


def test_errors_are_one_line_and_leave_nothing_behind(small_recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    unknown = build(small_recipe, out, "nope")
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "build.py: error: no image named 'nope' in recipes.toml (known: small)\n"
    )

    (tmp_path / "payload").unlink()
    missing = build(small_recipe, out)
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1
    assert f"{tmp_path}/payload: No such file or directory" in missing.stderr
    leftovers = [p.name for p in out.rglob("*") if p.name != ".lock"]
    assert leftovers in ([], [".work"]), leftovers


def test_a_failing_artifact_build_shows_the_tool_output(tmp_path: Path) -> None:
    (tmp_path / "broken.c").write_text("int main(void) { return nope; }\n")
    recipes = tmp_path / "recipes.toml"
    recipes.write_text(
        """
[artifacts.broken]
sources = ["broken.c"]
command = ["gcc", "-o", "{out}", "broken.c"]

[layers.l]
artifacts = { "/broken" = "broken" }

[images.x]
ref = "kubefixtures.local/x:1"
layers = ["l"]
version = "1"
"""
    )
    result = build(recipes, tmp_path / "out")
    assert result.returncode == 1
    assert "undeclared" in result.stderr  # gcc's own diagnostics (quotes vary by locale)
    assert result.stderr.splitlines()[-1] == (
        "build.py: error: artifact broken: gcc failed with exit code 1 (its output is above)"
    )
    assert not list((tmp_path / "out" / ".work" / "artifacts").iterdir())


def test_a_quiet_build_says_what_it_is_doing() -> None:
    out = io.StringIO()
    with Heartbeat(out, quiet=0.5) as heartbeat:
        heartbeat.step("compiling moto-packages (artifact 3 of 12)")
        time.sleep(1.8)
        heartbeat.say("build.py: compiled moto-packages")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("build.py: compiling moto-packages (artifact 3 of 12); ")
    assert "so far (about 2 min when nothing is cached)" in lines[0]
    assert lines[-1] == "build.py: compiled moto-packages"
