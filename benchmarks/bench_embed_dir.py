#!/usr/bin/env python
"""Throughput of ``spacy-elmo embed-dir`` against ``spacy-elmo embed`` on real sentences.

    python benchmarks/bench_embed_dir.py                      # 3,000 sentences, bundled model
    python benchmarks/bench_embed_dir.py --sentences 1000 --no-ray

The first ``--sentences`` lines of ``--text`` (default ``corpus/pretrain/train.txt``) are written to a
temporary directory as ``--files`` files of equal size (``embed`` reads them concatenated into one file).
Rows, each in this process on a fresh output directory, timing model loading, worker start-up and the
writing of the outputs (all layers, fp32):

- ``embed``: ``load_bilm`` + ``embed_file`` over the whole text, torch's default threads, then 1 thread;
- ``embed-dir local``: ``workers=1`` in this process (torch's default threads; ``--threads 1`` too), and
  ``workers=2`` spawned processes with one torch thread each;
- ``embed-dir ray``: the same worker counts on Ray actors of a local cluster started beforehand (its
  start-up time is printed on its own: it is paid once per cluster, not per run).

``vs embed`` is tokens/s over ``embed``'s; ``per-core efficiency`` of a 2-worker row is its tokens/s over
twice that of the matching 1-worker, 1-thread row. The CPU model and the 1-minute load average after each row
are printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from machine import cpu_flags, load_average  # noqa: E402
from spacy_elmo._compat import has_ray  # noqa: E402
from spacy_elmo.bilm.kernels import cpu_name  # noqa: E402
from spacy_elmo.embed import EmbedSettings, embed_dir, embed_file  # noqa: E402
from spacy_elmo.hub import load_bilm  # noqa: E402


def write_inputs(text: Path, n_sentences: int, n_files: int, directory: Path) -> tuple[Path, int]:
    """``n_files`` files of the first ``n_sentences`` non-blank lines of ``text``; returns the input folder and
    the number of tokens."""
    lines = []
    with open(text, encoding="utf-8") as source:
        for line in source:
            if line.strip():
                lines.append(line.strip())
            if len(lines) == n_sentences:
                break
    input_dir = directory / "in"
    input_dir.mkdir()
    per_file = -(-len(lines) // n_files)
    for k in range(n_files):
        chunk = lines[k * per_file : (k + 1) * per_file]
        (input_dir / f"part{k}.txt").write_text("".join(line + "\n" for line in chunk), encoding="utf-8")
    (directory / "all.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return input_dir, sum(len(line.split()) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, default=ROOT / "corpus" / "pretrain" / "train.txt")
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--shard-lines", type=int, default=250)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray rows")
    args = parser.parse_args()
    if not args.text.is_file():
        sys.exit(f"{args.text} not found (spacy project run corpus makes it; or pass --text FILE)")

    print(f"cpu: {cpu_name()} ({cpu_flags()}), {os.cpu_count()} logical cores")
    print(f"load average at start: {load_average()[0]:.2f}")
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        input_dir, tokens = write_inputs(args.text, args.sentences, args.files, tmp_dir)
        print(
            f"input: {args.sentences:,} sentences, {tokens:,} tokens from {args.text} in {args.files} files; "
            f"bundled model, output format all, fp32, shards of {args.shard_lines} lines\n"
        )
        print(f"{'run':<50} {'seconds':>8} {'tokens/s':>9} {'vs embed':>9} {'load':>5}")

        def report(name: str, seconds: float) -> None:
            rows.append((name, tokens / seconds))
            speedup = rows[-1][1] / rows[0][1]
            print(
                f"{name:<50} {seconds:8.1f} {tokens / seconds:9,.0f} {speedup:8.2f}x {load_average()[0]:5.2f}",
                flush=True,
            )

        start = time.perf_counter()
        embed_file(load_bilm(), tmp_dir / "all.txt", tmp_dir / "embed.hdf5", progress=False)
        report(f"embed (1 process, {torch.get_num_threads()} threads)", time.perf_counter() - start)
        default_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        start = time.perf_counter()
        embed_file(load_bilm(), tmp_dir / "all.txt", tmp_dir / "embed.hdf5", progress=False)
        report("embed (1 process, 1 thread)", time.perf_counter() - start)
        torch.set_num_threads(default_threads)

        def run_dir(name: str, workers: int, threads: int | None, ray_address: str | None = None) -> None:
            output = tmp_dir / name.replace(" ", "_").replace("=", "")
            if ray_address:
                from spacy_elmo.embed.ray_actors import ray_runner
            summary = embed_dir(
                input_dir,
                output,
                EmbedSettings(),
                workers=workers,
                threads=threads,
                shard_lines=args.shard_lines,
                runner=ray_runner(ray_address) if ray_address else None,
                progress=False,
            )
            assert summary.tokens == tokens and not summary.failed, summary
            report(name, summary.seconds)

        run_dir("embed-dir local --workers 1", 1, None)
        run_dir("embed-dir local --workers 1 --threads 1", 1, 1)
        run_dir("embed-dir local --workers 2 (1 thread each)", 2, 1)
        if has_ray and not args.no_ray:
            import ray

            start = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            print(f"(ray local cluster start: {time.perf_counter() - start:.1f} s, not counted below)")
            run_dir("embed-dir --ray local --workers 1", 1, None, "local")
            run_dir("embed-dir --ray local --workers 1 --threads 1", 1, 1, "local")
            run_dir("embed-dir --ray local --workers 2 (1 thread each)", 2, 1, "local")
            ray.shutdown()
    by_name = dict(rows)
    for backend in ("local", "--ray local"):
        one = by_name.get(f"embed-dir {backend} --workers 1 --threads 1")
        two = by_name.get(f"embed-dir {backend} --workers 2 (1 thread each)")
        if one and two:
            print(f"per-core efficiency, {backend}: {two / (2 * one):.0%} (2 workers vs 2 x 1 worker, 1 thread)")
    print(f"load average at end: {load_average()[0]:.2f}")


if __name__ == "__main__":
    main()
