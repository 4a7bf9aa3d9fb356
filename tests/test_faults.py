"""Environment faults as a user meets them through the CLI: output onto the input, a directory as output, a
read-only directory, a full disk, a byte-order mark, bad bytes, a killed run's temporary file, two runs on one
OUTPUT_DIR, a download that fails its pin, ``info``. Every one ends in one line and exit code 1, nothing lost."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from spacy_elmo.cli import app
from spacy_elmo.embed import input_dir, writer
from spacy_elmo.hub import IntegrityError, load_bilm, releases
from spacy_elmo.hub.releases import MODELS, Pin
from spacy_elmo.training.corpus import read_sentences
from spacy_elmo.util import atomic, hdf5
from spacy_elmo.util.atomic import WriteError, atomic_path

from .helpers import PARITY, SENTENCES, make_nlp, read_h5

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = ["--options", str(PARITY / "options.json"), "--weights", str(PARITY / "weights.hdf5")]
ROOT = Path(__file__).parent.parent


def cli(*args: str):
    """Run the CLI in this process: ``(exit code, the one error line or the whole output, result)``."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    return result.exit_code, errors[0] if len(errors) == 1 else result.output, result


def write_lines(path: Path, lines: list[str], prefix: bytes = b"") -> Path:
    path.write_bytes(prefix + "".join(line + "\n" for line in lines).encode("utf-8"))
    return path


@contextmanager
def tmpfs(directory: Path, size: str, read_only: bool = False):
    """A real tmpfs of ``size`` mounted on ``directory`` (root only; the test is skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


@contextmanager
def read_only_dir(directory: Path):
    """A directory nobody may write: a read-only tmpfs as root (chmod does not stop root), else chmod 0555."""
    if os.geteuid() == 0:
        with tmpfs(directory, "64k", read_only=True):
            yield directory
        return
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o555)
    try:
        yield directory
    finally:
        directory.chmod(0o755)


# ---- output onto the input -----------------------------------------------------------------------


def test_embed_onto_its_input_is_refused_also_through_links(tmp_path):
    text = write_lines(tmp_path / "same.txt", SENTENCES)
    before = text.read_bytes()
    (tmp_path / "soft.txt").symlink_to(text)
    os.link(text, tmp_path / "hard.txt")
    notes = {"same.txt": "", "soft.txt": ", through a symbolic link", "hard.txt": ", through a hard link"}
    for output, note in notes.items():
        code, line, result = cli("embed", text, tmp_path / output, *MODEL)
        assert code == 1, result.output
        assert line == (
            f"error: output {tmp_path / output} is the input file {text} (the same file{note}); "
            "writing it would destroy the input: choose another output path"
        )
        assert "embedding" not in result.output  # refused before any work
    assert text.read_bytes() == before and (tmp_path / "hard.txt").read_bytes() == before
    assert (tmp_path / "soft.txt").is_symlink()


def test_embed_dir_output_linked_to_its_input_is_refused(tmp_path):
    input_dir = tmp_path / "in"
    input_dir.mkdir()
    text = write_lines(input_dir / "a.txt", SENTENCES[:3])
    write_lines(input_dir / "b.txt", SENTENCES[3:5])
    before = text.read_bytes()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.hdf5").symlink_to(text)
    code, output, result = cli("embed-dir", input_dir, tmp_path / "out", *MODEL)
    assert code == 1
    assert f"error: output {tmp_path / 'out' / 'a.hdf5'} is the input file {text}" in result.output
    assert "1 files embedded, 0 skipped (finished before), 1 failed" in result.output
    assert text.read_bytes() == before and (tmp_path / "out" / "b.hdf5").is_file()


def test_adapt_and_pretrain_never_export_over_their_inputs(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("options.json", "weights.hdf5"):
        shutil.copy(PARITY / name, model / name)
    corpus = write_lines(tmp_path / "corpus.txt", SENTENCES)
    weights = (model / "weights.hdf5").read_bytes()
    code, line, _ = cli("adapt", model, corpus, model, "--heldout", corpus, "--max-steps", "1")
    assert code == 1
    assert line.startswith(f"error: output {model / 'options.json'} is the input file {model / 'options.json'}")
    assert (model / "weights.hdf5").read_bytes() == weights and not (model / "metrics.json").exists()
    options = tmp_path / "new" / "options.json"
    options.parent.mkdir()
    shutil.copy(PARITY / "options.json", options)
    code, line, _ = cli("pretrain", corpus, options.parent, "--heldout", corpus, "--options", options)
    assert code == 1 and line.startswith(f"error: output {options} is the input file {options}")


# ---- a directory as output, a read-only directory ------------------------------------------------


def test_output_that_is_a_directory_is_refused_before_any_work(tmp_path, parity_files):
    text = write_lines(tmp_path / "in.txt", SENTENCES)
    (tmp_path / "out.hdf5").mkdir()
    code, line, result = cli("embed", text, tmp_path / "out.hdf5", *MODEL)
    assert code == 1 and line == f"error: {tmp_path / 'out.hdf5'} is a directory; give the path of a file to write"
    assert "embedding" not in result.output
    (tmp_path / "model" / "weights.hdf5").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"weights\.hdf5 is a directory"):
        make_nlp(parity_files).get_pipe("elmo").to_disk(tmp_path / "model")
    a_file = write_lines(tmp_path / "a-file", ["x"])
    code, line, _ = cli("embed-dir", tmp_path, a_file, *MODEL)
    assert code == 1 and line == f"error: cannot write into {a_file}: not a directory"


def test_read_only_directory_is_one_line_for_every_command(tmp_path, parity_files, monkeypatch):
    text = write_lines(tmp_path / "in.txt", SENTENCES)
    (tmp_path / "texts").mkdir()
    shutil.copy(text, tmp_path / "texts" / "in.txt")
    with read_only_dir(tmp_path / "ro") as ro:
        reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
        code, line, result = cli("embed", text, ro / "out.hdf5", *MODEL)
        assert code == 1 and line == f"error: cannot write into {ro}: {reason}", result.output
        code, line, _ = cli("embed-dir", tmp_path / "texts", ro / "out", *MODEL)
        assert code == 1 and line.startswith(f"error: cannot write into {ro / 'out'}: ")
        code, line, _ = cli("pretrain", text, ro, "--heldout", text, "--options", PARITY / "options.json")
        assert code == 1 and line == f"error: cannot write into {ro}: {reason}"
        with pytest.raises(ValueError, match=f"cannot write into {ro}: {reason}"):
            make_nlp(parity_files).get_pipe("elmo").to_disk(ro)
        monkeypatch.setenv("SPACY_ELMO_CACHE", str(ro / "cache"))
        code, line, _ = cli("download", "http://127.0.0.1:9/weights.hdf5")
        assert code == 1 and line.startswith(f"error: cannot write into {ro / 'cache' / 'urls'}")
        assert sorted(os.listdir(ro)) == []


# ---- a full disk -------------------------------------------------------------------------------


def test_full_disk_is_found_before_any_work(tmp_path):
    text = write_lines(tmp_path / "in.txt", SENTENCES * 20)
    with tmpfs(tmp_path / "small", "200k") as small:
        code, line, result = cli("embed", text, small / "out.hdf5", *MODEL)
        assert code == 1, result.output
        assert line.startswith(f"error: {small / 'out.hdf5'}: not enough free space: about ")
        assert line.endswith(f"free in {small}; nothing was written") and "embedding" not in result.output
        (small / "texts").mkdir()
        shutil.copy(text, small / "texts" / "in.txt")
        code, line, _ = cli("embed-dir", small / "texts", small / "out", *MODEL)
        assert code == 1 and line.startswith(f"error: {small / 'out'}: not enough free space")
        assert sorted(os.listdir(small)) == ["out", "texts"] and os.listdir(small / "out") == [".embed-dir"]


def test_disk_filling_up_while_writing_removes_the_file_real_tmpfs(tmp_path, monkeypatch):
    """Another writer fills the disk after the up-front check: the first failed write ends the run."""
    monkeypatch.setattr(writer, "check_free_space", lambda *args, **kwargs: None)
    monkeypatch.setattr(input_dir, "check_free_space", lambda *args, **kwargs: None)
    text = write_lines(tmp_path / "in.txt", SENTENCES * 20)
    with tmpfs(tmp_path / "small", "200k") as small:
        code, line, result = cli("embed", text, small / "out.hdf5", *MODEL)
        assert code == 1, result.output
        assert line.startswith(f"error: {small / 'out.hdf5'}: No space left on device after ")
        assert line.endswith(f"were written; the unfinished file was removed, {small / 'out.hdf5'} is unchanged")
        assert "Traceback" not in result.output and "HDF5" not in result.output
        assert os.listdir(small) == []
        (tmp_path / "texts").mkdir()
        shutil.copy(text, tmp_path / "texts" / "in.txt")
        code, output, result = cli("embed-dir", tmp_path / "texts", small / "out", *MODEL)
        assert code == 1 and f"error: {small / 'out' / '.embed-dir'}" in result.output
        assert "No space left on device after" in result.output and "Traceback" not in result.output
        assert [p.name for p in (small / "out").rglob("*") if p.is_file()] == ["lock"]


def test_simulated_full_disk_everywhere(tmp_path, monkeypatch):
    """ENOSPC after 20 KB, on any machine: one line, exit 1, no temporary file."""

    class FillingFile(io.FileIO):
        def write(self, data):
            if self.tell() + memoryview(data).nbytes > 20_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    monkeypatch.setattr(hdf5, "open", lambda path, mode, buffering: FillingFile(path, "r+"), raising=False)
    text = write_lines(tmp_path / "in.txt", SENTENCES * 5)
    out = tmp_path / "out"
    out.mkdir()
    code, line, result = cli("embed", text, out / "x.hdf5", *MODEL)
    assert code == 1, result.output
    assert re.fullmatch(
        f"error: {re.escape(str(out / 'x.hdf5'))}: No space left on device after 1[0-9].[0-9] KB were written; "
        f"the unfinished file was removed, {re.escape(str(out / 'x.hdf5'))} is unchanged",
        line,
    )
    assert os.listdir(out) == []
    with pytest.raises(
        WriteError, match=r"m\.txt: Disk quota exceeded after 3 bytes were written; the unfinished file was removed"
    ):
        with atomic_path(out / "m.txt") as tmp:
            tmp.write_text("abc")
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert os.listdir(out) == []


@pytest.mark.slow
def test_full_disk_in_a_real_process_exits_1_without_segfault(tmp_path):
    text = write_lines(tmp_path / "in.txt", SENTENCES * 20)
    with tmpfs(tmp_path / "small", "200k") as small:
        script = (
            "import sys, spacy_elmo.embed.writer as w; w.check_free_space = lambda *a, **k: None; "
            "from spacy_elmo.cli import app; sys.argv[0] = 'spacy-elmo'; app()"
        )
        run = subprocess.run(
            [sys.executable, "-c", script, "embed", str(text), str(small / "out.hdf5"), *MODEL],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
            timeout=300,
        )
        assert run.returncode == 1, run.stderr[-2000:]
        errors = [line for line in run.stderr.splitlines() if line.strip() and "embedding" not in line]
        assert len(errors) == 1 and errors[0].startswith("error: ") and "No space left on device" in errors[0]
        assert os.listdir(small) == []


# ---- system errors, one line; --debug ------------------------------------------------------------


def test_os_errors_are_one_line_with_path_and_reason_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    text = write_lines(tmp_path / "in.txt", SENTENCES)

    def denied(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(writer, "read_lines", denied)
    code, line, result = cli("embed", text, tmp_path / "out.hdf5", *MODEL)
    assert code == 1 and line == f"error: {text}: Permission denied"
    assert "Traceback" not in result.output
    monkeypatch.setenv("SPACY_ELMO_DEBUG", "0")  # restored after the test: --debug sets it
    code, _, result = cli("--debug", "embed", text, tmp_path / "out.hdf5", *MODEL)
    assert code == 1 and isinstance(result.exception, PermissionError)
    monkeypatch.setenv("SPACY_ELMO_DEBUG", "1")
    code, _, result = cli("embed", text, tmp_path / "out.hdf5", *MODEL)
    assert isinstance(result.exception, PermissionError)


# ---- text: byte-order mark, bad bytes ------------------------------------------------------------


def test_a_byte_order_mark_is_dropped_everywhere_text_is_read(tmp_path, parity_bilm):
    plain = write_lines(tmp_path / "plain.txt", SENTENCES)
    bom = write_lines(tmp_path / "bom.txt", SENTENCES, prefix=b"\xef\xbb\xbf")
    for name in ("plain", "bom"):
        code, _, result = cli("embed", tmp_path / f"{name}.txt", tmp_path / f"{name}.hdf5", *MODEL)
        assert code == 0, result.output
    expected, found = read_h5(tmp_path / "plain.hdf5"), read_h5(tmp_path / "bom.hdf5")
    assert found["sentence_to_index"] == expected["sentence_to_index"] and sorted(found) == sorted(expected)
    for key in expected:
        if key != "sentence_to_index":
            np.testing.assert_allclose(found[key], expected[key], rtol=0, atol=1e-6)
    (tmp_path / "dir").mkdir()
    shutil.copy(bom, tmp_path / "dir" / "bom.txt")
    code, _, result = cli("embed-dir", tmp_path / "dir", tmp_path / "dir-out", *MODEL)
    assert code == 0, result.output
    assert read_h5(tmp_path / "dir-out" / "bom.hdf5")["sentence_to_index"] == expected["sentence_to_index"]
    np.testing.assert_allclose(read_h5(tmp_path / "dir-out" / "bom.hdf5")["0"], expected["0"], rtol=0, atol=1e-6)
    assert read_sentences(bom, 64) == read_sentences(plain, 64)
    assert read_sentences(bom, 64)[0][0] == SENTENCES[0].split()[0]


def test_an_undecodable_byte_names_file_line_and_offset_in_embed_as_in_embed_dir(tmp_path):
    (tmp_path / "dir").mkdir()
    latin = tmp_path / "dir" / "latin.txt"
    latin.write_bytes("ok line\nThe caf\u00e9 is open\n".encode("latin-1"))
    expected = (
        f"error: {latin}: line 2 is not valid UTF-8: byte 0xe9 at byte 8 of the line (byte offset 15 in the file): "
        "invalid continuation byte; save the file as UTF-8"
    )
    code, line, _ = cli("embed", latin, tmp_path / "out.hdf5", *MODEL)
    assert code == 1 and line == expected
    code, _, result = cli("embed-dir", tmp_path / "dir", tmp_path / "out", *MODEL)
    assert code == 1 and expected in result.output.splitlines()


# ---- a killed run's temporary file; two runs on one OUTPUT_DIR -----------------------------------


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "spacy_elmo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )


def _wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_embed_after_sigkill_removes_the_stale_temporary_file(tmp_path):
    text = write_lines(tmp_path / "in.txt", SENTENCES * 300)
    out = tmp_path / "out"
    out.mkdir()
    process = _spawn("embed", str(text), str(out / "x.hdf5"), *MODEL, "--batch-size", "8")
    temps = lambda: [p for p in out.iterdir() if p.name.startswith(".x.hdf5.")]  # noqa: E731
    _wait_for(lambda: temps() and temps()[0].stat().st_size > 50_000)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    (stale,) = temps()
    assert stale.name.startswith(f".x.hdf5.{process.pid}.") and not (out / "x.hdf5").exists()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = out / f".x.hdf5.{sleeper.pid}.abcd1234.tmp"  # a live writer's: kept
        other = out / f".y.hdf5.{process.pid}.abcd1234.tmp"  # another output's: kept
        for keep in (live, other):
            keep.write_bytes(b"x")
        small = write_lines(tmp_path / "small.txt", SENTENCES)
        code, _, result = cli("embed", small, out / "x.hdf5", *MODEL)
        assert code == 0, result.output
        assert sorted(p.name for p in out.iterdir()) == sorted([live.name, other.name, "x.hdf5"])
        assert len(read_h5(out / "x.hdf5")) == len(SENTENCES) + 1
    finally:
        sleeper.kill()
        sleeper.wait()


def test_embed_dir_refuses_an_output_dir_another_run_holds(tmp_path):
    (tmp_path / "in").mkdir()
    write_lines(tmp_path / "in" / "a.txt", SENTENCES)
    with input_dir.locked(tmp_path / "out"):
        code, line, result = cli("embed-dir", tmp_path / "in", tmp_path / "out", *MODEL)
        assert code == 1 and line == (
            f"error: {tmp_path / 'out'} is in use by another embed-dir run (pid {os.getpid()}); wait until it "
            "finishes (it resumes where it stops) or give another OUTPUT_DIR"
        )
    assert not (tmp_path / "out" / "a.hdf5").exists()
    code, _, result = cli("embed-dir", tmp_path / "in", tmp_path / "out", *MODEL)
    assert code == 0, result.output


@pytest.mark.slow
def test_two_concurrent_embed_dir_processes(tmp_path, parity_bilm):
    """The second run exits at once naming the first; the first, killed, leaves the lock free for a resume."""
    (tmp_path / "in").mkdir()
    for k in range(8):  # enough work that the first run outlasts the second one's start-up on idle cores
        write_lines(tmp_path / "in" / f"f{k}.txt", SENTENCES * 100)
    out, lock = tmp_path / "out", tmp_path / "out" / ".embed-dir" / "lock"
    args = ("embed-dir", str(tmp_path / "in"), str(out), *MODEL, "--shard-lines", "100")
    first = _spawn(*args)
    try:
        _wait_for(lambda: lock.is_file() and lock.read_text().strip())
        second = _spawn(*args)
        _, err = second.communicate(timeout=120)
        assert first.poll() is None, "the first run ended too soon for this test"
        assert second.returncode == 1
        assert err.strip() == (
            f"error: {out} is in use by another embed-dir run (pid {first.pid}); wait until it finishes "
            "(it resumes where it stops) or give another OUTPUT_DIR"
        )
    finally:
        first.kill()
        first.wait()
    code, _, result = cli(*args)
    assert code == 0, result.output
    assert ", 0 failed;" in result.output and (out / "f0.hdf5").is_file() and (out / "f1.hdf5").is_file()
    expected = parity_bilm.embed_sentences([s.split() for s in SENTENCES])
    with h5py.File(out / "f1.hdf5", "r") as f:
        assert len(f) == len(SENTENCES) * 100 + 1
        for i in (1, len(SENTENCES) * 99 + 2):
            np.testing.assert_allclose(f[str(i)][()], expected[i % len(SENTENCES)], rtol=0, atol=1e-5)


# ---- downloads, info ----------------------------------------------------------------------------


def test_a_download_that_fails_its_pin_is_not_retried(mirror, monkeypatch, model_cache):
    from spacy_elmo.hub import download

    monkeypatch.setattr(download, "RETRIES", 2)
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    small = MODELS["small"]
    size = (PARITY / "weights.hdf5").stat().st_size
    monkeypatch.setitem(releases.PINS, small.weights_path, Pin(size, "0" * 64))
    with pytest.raises(IntegrityError) as error:
        load_bilm("small")
    assert mirror.requests.count(small.weights_path) == 1
    message = str(error.value)
    cached = model_cache / "elmo" / small.weights_path
    assert message.startswith(f"{mirror.url(small.weights_path)} (for {cached}) arrived")
    assert "arrived complete but does not match its pin: sha256 mismatch: expected " + "0" * 64 in message
    assert message.endswith("the file was deleted; not downloaded again: the server holds another file")
    monkeypatch.setitem(releases.PINS, small.weights_path, Pin(123, "0" * 64))
    code, line, _ = cli("download", "small")
    assert code == 1 and f"{size:,} bytes, expected 123" in line and "not downloaded again" in line
    assert mirror.requests.count(small.weights_path) == 2


def test_a_read_only_cache_still_serves_its_files(mirror, monkeypatch, tmp_path):
    """The writability check comes only before a download: a cache copied to a read-only place works offline."""
    monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
    with tmpfs(tmp_path / "cache", "1m") as cache:
        monkeypatch.setenv("SPACY_ELMO_CACHE", str(cache))
        expected = load_bilm("small").embed_sentences([["Hello", "world"]])[0]
        subprocess.run(["mount", "-o", "remount,ro", str(cache)], check=True)
        monkeypatch.setenv("SPACY_ELMO_OFFLINE", "1")
        np.testing.assert_array_equal(load_bilm("small").embed_sentences([["Hello", "world"]])[0], expected)
        code, line, _ = cli("download", "medium")
        assert code == 1 and "SPACY_ELMO_OFFLINE=1 forbids downloading it" in line
        monkeypatch.delenv("SPACY_ELMO_OFFLINE")
        code, line, _ = cli("download", "medium")
        assert code == 1 and line.startswith(f"error: cannot write into {cache / 'elmo'}")
        assert line.endswith(": Read-only file system")


def test_info_is_a_readable_summary_and_json_on_request(model_cache):
    code, _, result = cli("info", *MODEL[1::2])
    assert code == 0, result.output
    rows = {line[:12].rstrip(): line[14:] for line in result.output.splitlines()}
    assert list(rows) == ["model", "architecture", "outputs", "parameters", "cpu", "kernels", "cuda", "cache dir"]
    assert rows["outputs"] == "3 layers x 64 dims" and rows["cache dir"] == str(model_cache)
    assert rows["architecture"].startswith("char CNN (4 filter widths, 48 filters, 1 highway) -> 2-layer biLSTM")
    code, _, result = cli("info", *MODEL[1::2], "--json")
    data = json.loads(result.output)
    assert (data["dim"], data["layers"]) == (64, 3) and "kernels" in data
    assert rows["parameters"].startswith(f"{data['parameters']:,} (")


def test_atomic_temp_names_carry_the_pid(tmp_path):
    with atomic_path(tmp_path / "f.txt") as tmp:
        assert tmp.name.startswith(f".f.txt.{os.getpid()}.") and tmp.name.endswith(".tmp")
        assert atomic.remove_stale_temps(tmp_path / "f.txt") == []  # ours, alive


def test_a_read_only_cache_reports_the_checksum_not_the_file_system(mirror, monkeypatch, tmp_path):
    """A cache on a file system that became read-only: a file without its recorded hash is used, and one that
    fails its hash is reported as such, with what to do, not as "Read-only file system"."""
    cache = tmp_path / "cache"
    with tmpfs(cache, "16m"):
        monkeypatch.setenv("SPACY_ELMO_CACHE", str(cache))
        monkeypatch.setenv("SPACY_ELMO_MIRROR", mirror.base)
        load_bilm("medium")  # unpinned: both files get a recorded hash
        options = cache / "elmo" / MODELS["medium"].options_path
        weights = cache / "elmo" / MODELS["medium"].weights_path
        Path(str(options) + ".sha256").unlink()
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
        subprocess.run(["mount", "-o", "remount,ro", str(cache)], check=True)
        code, line, _ = cli("info", "medium")
    assert code == 1
    assert line.startswith(f"error: cached file {weights} (from {mirror.url(MODELS['medium'].weights_path)}): sha256 ")
    assert line.endswith(f"it could not be deleted (Read-only file system): delete {weights} by hand")
