"""The ``spacy-elmo`` command line (also ``python -m spacy_elmo``)."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import typer

from . import __version__
from .cli_options import ADAPT_OPTIONS, EMBEDDING_OPTIONS, MODEL_OPTIONS, TRAINING_OPTIONS, fields, with_options
from .training.adapt import ADAPT_LR, MIX_RATIO

app = typer.Typer(help="ELMo contextual word vectors for spaCy", no_args_is_help=True, add_completion=False)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"spacy-elmo {__version__}")
        raise typer.Exit()


#: set to 1 (or pass --debug) to see the traceback of an error instead of its one line
DEBUG_ENV = "SPACY_ELMO_DEBUG"


@app.callback()
def main(
    debug: bool = typer.Option(False, "--debug", help=f"show the full traceback of an error (also {DEBUG_ENV}=1)"),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="print the version"),
) -> None:
    """ELMo contextual word vectors for spaCy."""
    if debug:
        os.environ[DEBUG_ENV] = "1"  # worker processes see it too


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def _describe(err: BaseException) -> str:
    """One line for a bad input (its message) or a system error (the path(s) and the system's reason)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 is not None else str(err.filename)
        return f"{where}: {err.strerror}"
    return str(err) or type(err).__name__


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """A ``ValueError`` (bad input) or ``OSError`` (file system, network) as one line on stderr and exit code 1;
    the traceback with ``--debug`` / ``SPACY_ELMO_DEBUG=1``."""
    try:
        yield
    except (ValueError, OSError) as err:
        if os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
            raise
        _fail(_describe(err))


def _embed_settings(settings: dict[str, Any]) -> Any:
    """The ``EmbedSettings`` of the shared embedding options (the model spec from its three parts)."""
    from .embed import EmbedSettings
    from .hub import ModelSpec

    model = ModelSpec(settings.pop("model"), settings.pop("options_file"), settings.pop("weight_file"))
    return EmbedSettings(model=model, **settings)


def _train(run: Callable[[], dict[str, Any]]) -> None:
    """Run a training command: its log on stderr (ending with the run's summary line and, when the biLM was
    not or barely fine-tuned, one warning line), one line for a bad input, the metrics as JSON (rank 0)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with _one_line_errors():
        metrics = run()
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(json.dumps(metrics, indent=1))


@app.command()
@with_options(TRAINING_OPTIONS + fields("lr"))
def pretrain(
    train_file: Path = typer.Argument(..., help="tokenized training text: one sentence per line"),
    output_dir: Path = typer.Argument(..., help="where checkpoints and the exported model go"),
    heldout: Path = typer.Option(..., "--heldout", help="tokenized held-out text for perplexity"),
    options: Optional[Path] = typer.Option(
        None, "--options", help="options.json giving the architecture of a new biLM (this or --init-from is required)"
    ),
    init_from: Optional[Path] = typer.Option(
        None,
        "--init-from",
        help="continue training an exported biLM: its options, weights, vocab and lm_head.pt (or --options)",
    ),
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
        options_file=str(options) if options else None,
        init_from=str(init_from) if init_from else None,
        **settings,
    )
    _train(lambda: train(config, resume=resume))


@app.command()
@with_options(ADAPT_OPTIONS)
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
    lr: float = typer.Option(ADAPT_LR, help="learning rate of the fine-tuning (all weights)"),
    mix_corpus: Optional[Path] = typer.Option(
        None, "--mix-corpus", help="general tokenized text mixed into the batches (e.g. the pretraining corpus)"
    ),
    mix_ratio: Optional[float] = typer.Option(
        None,
        help=f"share of each epoch's sentences drawn from --mix-corpus, in [0, 1) (default: {MIX_RATIO:g} with it)",
    ),
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
            vocab=vocab,  # type: ignore[arg-type]  # checked by adapt
            resume=resume,
            lr=lr,
            mix_file=str(mix_corpus) if mix_corpus else None,
            mix_ratio=mix_ratio,
            **settings,
        )
    )


@app.command()
@with_options(EMBEDDING_OPTIONS)
def embed(
    input_file: Path = typer.Argument(..., help="text file: one whitespace-tokenized sentence per line"),
    output_file: Path = typer.Argument(..., help="hdf5 file to write (one dataset per line)"),
    use_sentence_keys: bool = typer.Option(False, "--use-sentence-keys", help="key datasets by the sentence"),
    **options: Any,
) -> None:
    """Embed a text file into hdf5 like `allennlp elmo`: dataset "0", "1", ... per line, plus sentence_to_index."""
    from .embed import embed_file
    from .embed.writer import check_embed_paths

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with _one_line_errors():
        settings = _embed_settings(options)
        check_embed_paths(input_file, output_file)  # before the model loads
        embed_file(
            settings.model.load(settings.device, token_cache_size=settings.token_cache_size),
            input_file,
            output_file,
            output_format=settings.output_format,
            batch_size=settings.batch_size,
            forget_sentences=settings.forget_sentences,
            use_sentence_keys=use_sentence_keys,
            precision=settings.precision,
        )
    typer.echo(f"wrote {output_file}")


@app.command(name="embed-dir")
@with_options(EMBEDDING_OPTIONS)
def embed_dir(
    input_dir: Path = typer.Argument(..., help="directory of *.txt files: one whitespace-tokenized sentence per line"),
    output_dir: Path = typer.Argument(..., help="where each INPUT_DIR/<stem>.txt becomes <stem>.hdf5"),
    workers: int = typer.Option(1, help="biLM copies at work (without --ray: 1 = this process, more = processes)"),
    threads: Optional[int] = typer.Option(None, help="torch threads per worker (default: cores / workers)"),
    shard_lines: int = typer.Option(1000, help="lines per unit of work (big files are split into such ranges)"),
    ray_address: Optional[str] = typer.Option(
        None, "--ray", help="run on Ray: local (a new cluster here), auto (RAY_ADDRESS) or a cluster address"
    ),
    **options: Any,
) -> None:
    """Embed every *.txt of INPUT_DIR into OUTPUT_DIR/<stem>.hdf5 in the layout of `embed`.

    Finished files are skipped, unfinished ones resume from their finished parts; a bad file is reported
    and the others are still embedded (exit code 1 if any failed).
    """
    from ._compat import RAY_MISSING, has_ray
    from .embed import embed_dir as run

    with _one_line_errors():
        settings = _embed_settings(options)
        if ray_address is not None and not has_ray:
            raise ValueError(RAY_MISSING)
        runner = None
        if ray_address is not None:
            from .embed.ray_actors import ray_runner

            runner = ray_runner(ray_address)
        summary = run(
            input_dir, output_dir, settings, workers=workers, threads=threads, shard_lines=shard_lines, runner=runner
        )
    for message in summary.failed.values():
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    typer.echo(str(summary))
    if summary.failed:
        raise typer.Exit(code=1)


@app.command()
def info(
    options_file: Optional[str] = typer.Argument(None, help="options.json (path or URL), or a released model's name"),
    weight_file: Optional[str] = typer.Argument(None, help="weights.hdf5 (path or URL)"),
    as_json: bool = typer.Option(False, "--json", help="everything as JSON (machine-readable)"),
) -> None:
    """Describe a biLM (the bundled default without arguments) and the kernels that run it on this machine."""
    from .bilm import kernels
    from .hub import ModelSpec
    from .hub.cache import cache_dir

    with _one_line_errors():
        spec = ModelSpec.from_args(options_file, weight_file)
        bilm = spec.load()
        machine: dict[str, Any] = kernels.describe()
    params = sum(p.numel() for p in bilm.parameters())
    model = {"options": bilm.options.to_json(), "parameters": params, "layers": bilm.n_layers, "dim": bilm.dim}
    if as_json:
        typer.echo(json.dumps({**model, "kernels": machine}, indent=1))
        return
    options = bilm.options
    rows = {
        "model": str(spec),
        "architecture": (
            f"char CNN ({len(options.filters)} filter widths, {options.n_filters:,} filters, "
            f"{options.n_highway} highway) -> {options.n_layers}-layer biLSTM ({options.lstm_dim:,} cells, "
            f"projection {options.projection_dim})"
        ),
        "outputs": f"{bilm.n_layers} layers x {bilm.dim} dims",
        "parameters": f"{params:,} ({params / 1e6:.1f}M)",
        "cpu": f"{machine['cpu']} ({machine['cpu_capability']}: {', '.join(machine['cpu_features'])})",
        "kernels": (
            f"mode {machine['kernel_mode']}, oneDNN fp32 {'yes' if machine['onednn_fp32'] else 'no'}, "
            f"bf16 {'yes' if machine['onednn_bf16'] else 'no'}, int8 {machine['int8_kernel'] or 'no'}; "
            f"--precision bf16 runs as {machine['bf16_runs_as']}, int8 as {machine['int8_runs_as']}; "
            f"{machine['torch_threads']} torch threads"
        ),
        "cuda": ", ".join(machine["cuda_devices"]) or "none",
        "cache dir": str(cache_dir()),
    }
    width = max(map(len, rows))
    typer.echo("\n".join(f"{name:<{width}}  {value}" for name, value in rows.items()))


@app.command()
def download(
    models: List[str] = typer.Argument(..., help="released model names (see `spacy-elmo models`) or file URLs"),
    force: bool = typer.Option(
        False, "--force", help="download again even if cached (the cached copy stays if that fails)"
    ),
) -> None:
    """Download released models (or files by URL) into the cache (SPACY_ELMO_CACHE) and verify them."""
    from .hub import download_model, fetch
    from .hub.releases import is_url

    for model in models:
        with _one_line_errors():
            paths = [fetch(model, force=force)] if is_url(model) else download_model(model, force=force)
        typer.echo(f"{model}: " + " ".join(str(p) for p in paths))


@app.command(name="models")
def list_models() -> None:
    """The released models: name, layers, dim, parameters, download size, and whether they are cached."""
    from .hub.model_table import model_table

    with _one_line_errors():
        typer.echo(model_table())


@app.command()
@with_options(MODEL_OPTIONS)
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, help="port to listen on"),
    max_batch_tokens: int = typer.Option(2048, help="tokens per biLM batch (a longer request runs alone)"),
    max_wait_ms: float = typer.Option(5.0, help="how long the oldest waiting request waits for others to join"),
    max_queue: int = typer.Option(256, help="requests waiting at most (more: 503 with Retry-After)"),
    max_request_tokens: int = typer.Option(2048, help="tokens per request at most (more: 413)"),
    workers: int = typer.Option(1, help="threads running batches at once, each with cores / workers torch threads"),
    max_body_bytes: int = typer.Option(4 * 2**20, help="request body size at most (more: 413)"),
    request_timeout_s: float = typer.Option(30.0, help="a request's headers and body must arrive within this (408)"),
    keep_alive_s: float = typer.Option(75.0, help="a connection with no request under way is closed after this"),
    max_connections: int = typer.Option(1000, help="open connections at most (more are closed at once)"),
    max_header_bytes: int = typer.Option(16 * 2**10, help="request line + headers at most (more: 400)"),
    drain_timeout_s: float = typer.Option(30.0, help="at SIGTERM, requests still open after this are cancelled"),
    tokenizer: str = typer.Option("whitespace", help="splits 'texts': whitespace, or a spaCy language code"),
    ray_address: Optional[str] = typer.Option(
        None, "--ray", help="serve on Ray Serve: local (a new cluster here), auto (RAY_ADDRESS) or a cluster address"
    ),
    replicas: int = typer.Option(1, help="Ray Serve replicas (with --ray)"),
    max_replicas: Optional[int] = typer.Option(None, help="autoscale up to this many replicas (with --ray)"),
    api_key: Optional[str] = typer.Option(
        None,
        envvar="SPACY_ELMO_API_KEY",
        show_default=False,
        help="every request but GET /health must send 'Authorization: Bearer KEY' (else 401)",
    ),
    playground: bool = typer.Option(True, help="GET / serves a page comparing two texts token by token"),
    **options: Any,
) -> None:
    """Serve embeddings over HTTP: POST /v1/embed, /v1/similarity; GET /health, /ready, /info, /metrics, / (a page).

    Concurrent requests are batched; SIGTERM stops accepting, finishes the admitted requests and exits 0.
    """
    from ._compat import RAY_SERVE_MISSING, SERVE_MISSING, has_ray, has_serve
    from .hub import ModelSpec

    if not has_serve or (ray_address is not None and not has_ray):
        _fail(SERVE_MISSING if not has_serve else RAY_SERVE_MISSING)
    from .serve.app import check_max_wait_ms
    from .serve.auth import check_key, exposure_warning
    from .serve.limits import Limits
    from .serve.tokenizers import make_tokenizer

    with _one_line_errors():
        limits = Limits(
            max_body_bytes=max_body_bytes,
            request_timeout_s=request_timeout_s,
            keep_alive_s=keep_alive_s,
            max_connections=max_connections,
            max_header_bytes=max_header_bytes,
            drain_timeout_s=drain_timeout_s,
        )
        check_max_wait_ms(max_wait_ms)
        if not 1 <= port <= 65535:
            raise ValueError(f"--port must be in 1..65535, found {port}")
        api_key = check_key(api_key)
        warning = exposure_warning(host, api_key)
        if warning:
            typer.echo(warning, err=True)
        model = ModelSpec(options.pop("model"), options.pop("options_file"), options.pop("weight_file"))
        device, token_cache_size = options.pop("device"), options.pop("token_cache_size")
        name = model.model or ("default" if model.is_default else str(model.options_file))
        tokenize = make_tokenizer(tokenizer)  # a bad name fails here, also before Ray starts
        settings: dict[str, Any] = dict(
            max_batch_tokens=max_batch_tokens,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            max_request_tokens=max_request_tokens,
            workers=workers,
            precision=options.pop("precision"),
            api_key=api_key,
            playground=playground,
        )
        if ray_address is not None:
            try:
                from .serve.ray_serve import deployment, run_on_ray
            except ImportError as err:  # Ray without its serve extra: grpcio, fastapi, ... missing
                _fail(f"{RAY_SERVE_MISSING} ({err})")

            application = deployment(
                model,
                model_name=name,
                replicas=replicas,
                max_replicas=max_replicas,
                device=device,
                token_cache_size=token_cache_size,
                tokenizer=tokenizer,
                **settings,
            )
            run_on_ray(application, ray_address, host, port)
            return
        from .serve import create_app, run
        from .serve.connections import check_port

        check_port(host, port)  # before the model loads: a port in use is known in a moment
        bilm = model.load(device, token_cache_size=token_cache_size)
        if workers > 1 and "OMP_NUM_THREADS" not in os.environ:  # else the workers' torch threads share the cores
            import torch

            from .util.cores import threads_per_worker

            torch.set_num_threads(threads_per_worker(workers))
        service = create_app(bilm, tokenizer=tokenize, model_name=name, limits=limits, **settings)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(service, host, port)
