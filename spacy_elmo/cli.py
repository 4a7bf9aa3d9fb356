"""The ``spacy-elmo`` command line (also ``python -m spacy_elmo``)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Optional

import typer

from .bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE

app = typer.Typer(help="ELMo contextual word vectors for spaCy", no_args_is_help=True, add_completion=False)

# options shared by `embed` and `embed-dir`
MODEL = typer.Option(None, "--model", help="a released model's name (see `spacy-elmo models`)")
OPTIONS_FILE = typer.Option(None, "--options", help="options.json: path or URL (default: bundled)")
WEIGHT_FILE = typer.Option(None, "--weights", help="weights.hdf5: path or URL (default: bundled)")
OUTPUT_FORMAT = typer.Option("all", help="all (every layer), top, or average")
BATCH_SIZE = typer.Option(64, help="sentences per biLM batch")
FORGET_SENTENCES = typer.Option(False, "--forget-sentences", help="no sentence_to_index map")
PRECISION = typer.Option("fp32", help="fp32 or bf16 (runs as fp32 on CPUs without bf16 kernels)")
DEVICE = typer.Option("cpu", help="cpu, cuda or cuda:N")
TOKEN_CACHE_SIZE = typer.Option(DEFAULT_TOKEN_CACHE_SIZE, help="word types whose token layer is cached (0: no cache)")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@app.command()
def pretrain(
    train_file: Path = typer.Argument(..., help="tokenized training text: one sentence per line"),
    output_dir: Path = typer.Argument(..., help="where checkpoints and the exported model go"),
    heldout: Path = typer.Option(..., "--heldout", help="tokenized held-out text for perplexity"),
    options: Optional[Path] = typer.Option(None, "--options", help="options.json giving the architecture of a new biLM"),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="continue training an exported biLM (its options, weights, vocab and lm_head.pt)"
    ),
    vocab_size: int = typer.Option(50000, help="softmax vocabulary size, specials included"),
    min_count: int = typer.Option(3, help="least count for a word to enter the vocabulary"),
    max_length: int = typer.Option(64, help="longer sentences are cut to this many tokens"),
    batch_tokens: int = typer.Option(4096, help="tokens per batch (per process)"),
    optimizer: str = typer.Option("adam", help="adam or adagrad"),
    lr: float = typer.Option(1e-3, help="learning rate"),
    clip: float = typer.Option(1.0, help="gradient norm clipping"),
    warmup_steps: int = typer.Option(0, help="linear learning-rate warm-up over this many steps"),
    lr_schedule: str = typer.Option("constant", help="constant, or linear: decay to zero at --max-steps"),
    dropout: float = typer.Option(0.1, help="dropout on LSTM inputs and before the softmax"),
    max_steps: int = typer.Option(0, help="stop after this many steps (0: no limit)"),
    max_minutes: float = typer.Option(0.0, help="stop after this much training time (0: no limit)"),
    max_epochs: int = typer.Option(1, help="passes over the corpus"),
    eval_every: int = typer.Option(500, help="held-out evaluation every N steps"),
    checkpoint_every: int = typer.Option(200, help="checkpoint every N steps"),
    seed: int = typer.Option(0),
    precision: str = typer.Option("fp32", help="fp32 or bf16 (autocast)"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUTPUT_DIR/checkpoints"),
) -> None:
    """Pretrain a biLM (forward + backward LM, adaptive softmax) and export options.json + weights.hdf5 + vocab.txt.

    Runs under `torchrun --nproc_per_node=N` with DistributedDataParallel (each rank reads its shard).
    """
    from .training import TrainConfig, train

    config = TrainConfig(
        train_file=str(train_file), heldout_file=str(heldout), output_dir=str(output_dir),
        options_file=str(options or ""), init_from=str(init_from or ""),
        vocab_size=vocab_size, min_count=min_count, max_length=max_length, batch_tokens=batch_tokens,
        optimizer=optimizer, lr=lr, clip=clip, warmup_steps=warmup_steps, lr_schedule=lr_schedule, dropout=dropout,
        max_steps=max_steps, max_minutes=max_minutes,
        max_epochs=max_epochs, eval_every=eval_every, checkpoint_every=checkpoint_every, seed=seed,
        precision=precision, device=device,
    )
    try:
        metrics = train(config, resume=resume)
    except ValueError as err:
        _fail(str(err))
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(json.dumps(metrics, indent=1))


@app.command()
def embed(
    input_file: Path = typer.Argument(..., help="text file: one whitespace-tokenized sentence per line"),
    output_file: Path = typer.Argument(..., help="hdf5 file to write (one dataset per line)"),
    model: Optional[str] = MODEL,
    options_file: Optional[str] = OPTIONS_FILE,
    weight_file: Optional[str] = WEIGHT_FILE,
    output_format: str = OUTPUT_FORMAT,
    batch_size: int = BATCH_SIZE,
    forget_sentences: bool = FORGET_SENTENCES,
    use_sentence_keys: bool = typer.Option(False, "--use-sentence-keys", help="key datasets by the sentence"),
    precision: str = PRECISION,
    device: str = DEVICE,
    token_cache_size: int = TOKEN_CACHE_SIZE,
) -> None:
    """Embed a text file into hdf5 like `allennlp elmo`: dataset "0", "1", ... per line, plus sentence_to_index."""
    from .allennlp import embed_file
    from .hub import load_bilm

    try:
        if model is not None and (options_file is not None or weight_file is not None):
            raise ValueError("give either --model or --options / --weights, not both")
        files = (model, None) if model is not None else (options_file, weight_file)
        bilm = load_bilm(*files, device, token_cache_size=token_cache_size)
        embed_file(
            bilm, input_file, output_file, output_format, batch_size, forget_sentences, use_sentence_keys, precision
        )
    except ValueError as err:
        _fail(str(err))
    typer.echo(f"wrote {output_file}")


@app.command(name="embed-dir")
def embed_dir(
    input_dir: Path = typer.Argument(..., help="directory of *.txt files: one whitespace-tokenized sentence per line"),
    output_dir: Path = typer.Argument(..., help="where each INPUT_DIR/<stem>.txt becomes <stem>.hdf5"),
    model: Optional[str] = MODEL,
    options_file: Optional[str] = OPTIONS_FILE,
    weight_file: Optional[str] = WEIGHT_FILE,
    output_format: str = OUTPUT_FORMAT,
    batch_size: int = BATCH_SIZE,
    forget_sentences: bool = FORGET_SENTENCES,
    precision: str = PRECISION,
    device: str = DEVICE,
    token_cache_size: int = TOKEN_CACHE_SIZE,
    workers: int = typer.Option(1, help="biLM copies at work (without --ray: 1 = this process, more = processes)"),
    threads: Optional[int] = typer.Option(None, help="torch threads per worker (default: cores / workers)"),
    shard_lines: int = typer.Option(1000, help="lines per unit of work (big files are split into such ranges)"),
    ray_address: Optional[str] = typer.Option(
        None, "--ray", help="run on Ray: local (a new cluster here), auto (RAY_ADDRESS) or a cluster address"
    ),
) -> None:
    """Embed every *.txt of INPUT_DIR into OUTPUT_DIR/<stem>.hdf5 in the layout of `embed`.

    Finished files are skipped, unfinished ones resume from their finished parts; a bad file is reported
    and the others are still embedded (exit code 1 if any failed).
    """
    from .embed_dir import EmbedSettings
    from .embed_dir import embed_dir as run

    try:
        settings = EmbedSettings(
            model, options_file, weight_file, output_format, batch_size, precision, device, token_cache_size,
            forget_sentences,
        )
        summary = run(
            input_dir, output_dir, settings, workers=workers, threads=threads, shard_lines=shard_lines,
            ray_address=ray_address,
        )
    except ValueError as err:
        _fail(str(err))
    for message in summary.failed.values():
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    typer.echo(str(summary))
    if summary.failed:
        raise typer.Exit(code=1)


@app.command()
def info(
    options_file: Optional[str] = typer.Argument(None, help="options.json (path or URL), or a released model's name"),
    weight_file: Optional[str] = typer.Argument(None, help="weights.hdf5 (path or URL)"),
) -> None:
    """Describe a biLM (the bundled default without arguments) and the kernels that run it on this machine."""
    from .bilm import kernels
    from .hub import load_bilm

    try:
        bilm = load_bilm(options_file, weight_file)
        machine = kernels.describe()
    except ValueError as err:
        _fail(str(err))
    params = sum(p.numel() for p in bilm.parameters())
    model = {"options": bilm.options.to_json(), "parameters": params, "layers": bilm.n_layers, "dim": bilm.dim}
    typer.echo(json.dumps({**model, "kernels": machine}, indent=1))


@app.command()
def download(
    models: List[str] = typer.Argument(..., help="released model names (see `spacy-elmo models`) or file URLs"),
) -> None:
    """Download released models (or files by URL) into the cache (SPACY_ELMO_CACHE) and verify them."""
    from .hub import download_model, fetch
    from .hub.cache import is_url

    for model in models:
        try:
            paths = [fetch(model)] if is_url(model) else download_model(model)
        except ValueError as err:
            _fail(str(err))
        typer.echo(f"{model}: " + " ".join(str(p) for p in paths))


@app.command(name="models")
def list_models() -> None:
    """The released models: name, layers, dim, parameters, download size, and whether they are cached."""
    from .hub.catalog import model_table

    try:
        typer.echo(model_table())
    except ValueError as err:
        _fail(str(err))
