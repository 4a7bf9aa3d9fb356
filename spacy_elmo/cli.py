"""The ``spacy-elmo`` command line (also ``python -m spacy_elmo``)."""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, List, Optional

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


#: settings shared by ``pretrain`` and ``adapt``: (name, default, help), all TrainConfig fields
_TRAINING_OPTIONS: tuple[tuple[str, Any, str], ...] = (
    ("vocab_size", 50000, "softmax vocabulary size, specials included (when one is built from the corpus)"),
    ("min_count", 3, "least count for a word to enter a vocabulary built from the corpus"),
    ("max_length", 64, "longer sentences are cut to this many tokens"),
    ("batch_tokens", 4096, "tokens per batch (per process)"),
    ("optimizer", "adam", "adam or adagrad"),
    ("clip", 1.0, "gradient norm clipping"),
    ("warmup_steps", 0, "linear learning-rate warm-up over this many steps"),
    ("lr_schedule", "constant", "constant, or linear: decay to zero at --max-steps"),
    ("dropout", 0.1, "dropout on LSTM inputs and before the softmax"),
    ("max_steps", 0, "stop after this many steps (0: no limit)"),
    ("max_minutes", 0.0, "stop after this much training time (0: no limit)"),
    ("max_epochs", 1, "passes over the corpus"),
    ("eval_every", 500, "held-out evaluation every N steps"),
    ("checkpoint_every", 200, "checkpoint every N steps"),
    ("seed", 0, "random seed"),
    ("precision", "fp32", "fp32 or bf16 (autocast)"),
    ("device", "cpu", "cpu or cuda"),
)


def _training_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the options of :data:`_TRAINING_OPTIONS` to ``command``, which takes them as ``**settings``."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(default, help=text), annotation=type(default)
        )
        for name, default, text in _TRAINING_OPTIONS
    ]
    # typer reads the parameters from __signature__, which mypy does not know on a plain function
    command.__signature__ = signature.replace(parameters=[*own, *shared])  # type: ignore[attr-defined]
    return command


def _train(run: Callable[[], dict[str, Any]]) -> None:
    """Run a training command: its log on stderr, one line for a bad input, the metrics as JSON (rank 0)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        metrics = run()
    except ValueError as err:
        _fail(str(err))
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(json.dumps(metrics, indent=1))


@app.command()
@_training_options
def pretrain(
    train_file: Path = typer.Argument(..., help="tokenized training text: one sentence per line"),
    output_dir: Path = typer.Argument(..., help="where checkpoints and the exported model go"),
    heldout: Path = typer.Option(..., "--heldout", help="tokenized held-out text for perplexity"),
    options: Optional[Path] = typer.Option(
        None, "--options", help="options.json giving the architecture of a new biLM"
    ),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="continue training an exported biLM (its options, weights, vocab and lm_head.pt)"
    ),
    lr: float = typer.Option(1e-3, help="learning rate"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUTPUT_DIR/checkpoints"),
    **settings: Any,
) -> None:
    """Pretrain a biLM (forward + backward LM, adaptive softmax) and export options.json + weights.hdf5 + vocab.txt.

    Runs under `torchrun --nproc_per_node=N` with DistributedDataParallel (each rank reads its shard).
    """
    from .training import TrainConfig, train

    config = TrainConfig(
        train_file=str(train_file),
        heldout_file=str(heldout),
        output_dir=str(output_dir),
        options_file=str(options or ""),
        init_from=str(init_from or ""),
        lr=lr,
        **settings,
    )
    _train(lambda: train(config, resume=resume))


@app.command()
@_training_options
def adapt(
    model: str = typer.Argument(
        ...,
        help="the biLM: 'default' (bundled), a released model's name, a directory with options.json + "
        "weights.hdf5, or an options.json path or URL (with --weights)",
    ),
    corpus: Path = typer.Argument(..., help="tokenized domain text: one sentence per line"),
    output_dir: Path = typer.Argument(..., help="where checkpoints and the adapted model go"),
    heldout: Path = typer.Option(..., "--heldout", help="tokenized held-out domain text for perplexity"),
    weights: Optional[str] = typer.Option(
        None, "--weights", help="weights.hdf5 (path or URL) when MODEL is an options file"
    ),
    vocab: str = typer.Option(
        "model", help="model: the model's vocab.txt (built from CORPUS when it has none); corpus: build one from CORPUS"
    ),
    head_only: bool = typer.Option(
        False, "--head-only", help="train only the softmax: the biLM stays bitwise unchanged"
    ),
    lr: float = typer.Option(1e-4, help="learning rate of the fine-tuning (all weights)"),
    head_lr: float = typer.Option(1e-3, help="learning rate of the head warm-up (and of --head-only)"),
    head_eval_every: int = typer.Option(100, help="head warm-up: held-out evaluation every N steps"),
    head_min_gain: float = typer.Option(
        0.02, help="head warm-up ends when an evaluation is less than this fraction below the one before"
    ),
    head_max_steps: int = typer.Option(2000, help="head warm-up ends at this step at the latest"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUTPUT_DIR/checkpoints"),
    **settings: Any,
) -> None:
    """Adapt a trained biLM to your text: keep (or build) its vocabulary, warm up a new softmax with the biLM
    frozen when it has none for that vocabulary, then fine-tune everything at a small learning rate.

    Exports options.json + weights.hdf5 + vocab.txt + lm_head.pt (+ metrics.json) like `pretrain`.
    """
    from .training.adapt import adapt as adapt_model

    _train(
        lambda: adapt_model(
            model,
            str(corpus),
            str(heldout),
            str(output_dir),
            weights=weights,
            vocab=vocab,
            resume=resume,
            head_only=head_only,
            lr=lr,
            head_lr=head_lr,
            head_eval_every=head_eval_every,
            head_min_gain=head_min_gain,
            head_max_steps=head_max_steps,
            **settings,
        )
    )


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
            model,
            options_file,
            weight_file,
            output_format,
            batch_size,
            precision,
            device,
            token_cache_size,
            forget_sentences,
        )
        summary = run(
            input_dir,
            output_dir,
            settings,
            workers=workers,
            threads=threads,
            shard_lines=shard_lines,
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
    from .hub.registry import is_url

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


@app.command()
def serve(
    model: Optional[str] = MODEL,
    options_file: Optional[str] = OPTIONS_FILE,
    weight_file: Optional[str] = WEIGHT_FILE,
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, help="port to listen on"),
    precision: str = PRECISION,
    device: str = DEVICE,
    token_cache_size: int = TOKEN_CACHE_SIZE,
    max_batch_tokens: int = typer.Option(2048, help="tokens per biLM batch (a longer request runs alone)"),
    max_wait_ms: float = typer.Option(5.0, help="how long the oldest waiting request waits for others to join"),
    max_queue: int = typer.Option(256, help="requests waiting at most (more: 503 with Retry-After)"),
    max_request_tokens: int = typer.Option(2048, help="tokens per request at most (more: 413)"),
    tokenizer: str = typer.Option("whitespace", help="splits 'texts': whitespace, or a spaCy language code"),
    ray_address: Optional[str] = typer.Option(
        None, "--ray", help="serve on Ray Serve: local (a new cluster here), auto (RAY_ADDRESS) or a cluster address"
    ),
    replicas: int = typer.Option(1, help="Ray Serve replicas (with --ray)"),
    max_replicas: Optional[int] = typer.Option(None, help="autoscale up to this many replicas (with --ray)"),
) -> None:
    """Serve embeddings over HTTP: POST /v1/embed, /v1/similarity; GET /health, /ready, /info, /metrics.

    Concurrent requests are batched; SIGTERM stops accepting, finishes the admitted requests and exits 0.
    """
    from ._compat import RAY_MISSING, SERVE_MISSING, has_ray, has_serve

    if not has_serve or (ray_address is not None and not has_ray):
        _fail(SERVE_MISSING if not has_serve else RAY_MISSING)
    from .serve.tokenizers import make_tokenizer

    try:
        if model is not None and (options_file is not None or weight_file is not None):
            raise ValueError("give either --model or --options / --weights, not both")
        files = (model, None) if model is not None else (options_file, weight_file)
        name = model or ("default" if options_file is None else str(options_file))
        tokenize = make_tokenizer(tokenizer)  # a bad name fails here, also before Ray starts
        limits: dict[str, Any] = dict(
            max_batch_tokens=max_batch_tokens,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            max_request_tokens=max_request_tokens,
            precision=precision,
        )
        if ray_address is not None:
            from .serve.ray_serve import deployment, run_on_ray

            application = deployment(
                files,
                model_name=name,
                replicas=replicas,
                max_replicas=max_replicas,
                device=device,
                token_cache_size=token_cache_size,
                tokenizer=tokenizer,
                **limits,
            )
            run_on_ray(application, ray_address, host, port)
            return
        from .hub import load_bilm
        from .serve import create_app, run

        bilm = load_bilm(*files, device, token_cache_size=token_cache_size)
        service = create_app(bilm, tokenizer=tokenize, model_name=name, **limits)
    except ValueError as err:
        _fail(str(err))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(service, host, port)
