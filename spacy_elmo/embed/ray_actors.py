"""ELMo on Ray: the actors behind ``spacy-elmo embed-dir --ray`` and ``embed_dataset`` for Ray Data.

Install with ``pip install "spacy-elmo[ray]"``; this is the only module that imports Ray. Every actor loads
the biLM once. For ``embed-dir`` on a cluster of several machines, INPUT_DIR and OUTPUT_DIR must be on storage
all nodes see at the same path (actors read their line ranges and write their parts there).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterator, Sequence

from .._compat import RAY_MISSING
from ..bilm.precision import Precision

try:
    import pyarrow as pa
    import ray
    import ray.data
    from ray.data.extensions import ArrowVariableShapedTensorArray
    from ray.exceptions import RayActorError, RayTaskError
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(RAY_MISSING) from err

from ..bilm.outputs import DEFAULT_BATCH_SIZE, OutputFormat, select_layers
from ..bilm.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from ..hub.spec import ModelSpec
from .shards import EmbedSettings, RunnerFactory, Shard, ShardEmbedder, ShardRunner

MAX_RETRIES = 3  # restarts of a dead actor, and retries of the task it was running


@ray.remote(max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)
class _ShardActor:
    """One shard embedder (biLM loaded once per actor, also after a restart)."""

    def __init__(self, settings: EmbedSettings, threads: int | None, embedder: type[ShardEmbedder]) -> None:
        self.embedder = embedder(settings, threads)

    def embed(self, shard: Shard) -> Shard:
        return self.embedder(shard)


def connect(address: str) -> bool:
    """Join Ray at ``address`` (``"local"``: start a cluster on this machine; ``"auto"``: the one
    ``RAY_ADDRESS`` or this machine runs); ``False`` if this process was connected already."""
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return True


def ray_runner(address: str, embedder: type[ShardEmbedder] = ShardEmbedder) -> RunnerFactory:
    """The Ray backend for ``embed_dir(..., runner=ray_runner("local"))``: ``address`` ``"local"`` starts a
    cluster on this machine, ``"auto"`` or an address joins one; ``embedder``: the class each actor runs."""
    return partial(ray_shard_runner, address=address, embedder=embedder)


def ray_shard_runner(
    settings: EmbedSettings,
    workers: int,
    threads: int | None,
    *,
    address: str,
    embedder: type[ShardEmbedder] = ShardEmbedder,
) -> ShardRunner:
    """Run shards on ``workers`` actors (``num_cpus=threads``; one GPU each when ``settings.device`` is
    CUDA), ``threads`` torch threads each; a dead actor is restarted and its task retried
    (``MAX_RETRIES``). Yields ``(shard, None)`` or ``(shard, error)`` as shards finish. Each actor resolves
    the model itself (on a cluster, every node fetches a released model into its own cache)."""

    def run(shards: list[Shard]) -> Iterator[tuple[Shard, BaseException | None]]:
        started = connect(address)
        try:
            options = {"num_cpus": threads or 1, "num_gpus": int(settings.device.startswith("cuda"))}
            actor_class: Any = _ShardActor  # ray.remote made it an ActorClass (.options, .remote)
            idle = [actor_class.options(**options).remote(settings, threads, embedder) for _ in range(workers)]
            todo = list(reversed(shards))
            running: dict[Any, tuple[Any, Shard]] = {}  # task -> (actor, shard)
            while todo or running:
                while idle and todo:
                    actor, shard = idle.pop(), todo.pop()
                    running[actor.embed.remote(shard)] = (actor, shard)
                if not running:  # every actor is gone for good
                    yield from ((shard, RuntimeError("no Ray actor left to embed this shard")) for shard in todo)
                    return
                [ref], _ = ray.wait(list(running), num_returns=1)
                actor, shard = running.pop(ref)
                try:
                    yield ray.get(ref), None
                except RayTaskError as err:
                    yield shard, err.cause if isinstance(err.cause, BaseException) else err
                except RayActorError as err:  # dead after all its restarts: do not use it again
                    yield shard, err
                    continue
                idle.append(actor)
        finally:
            if started:
                ray.shutdown()

    return run


class _BatchEmbedder:
    """Ray Data UDF: loads the biLM once per actor, adds the ELMo vectors of ``text_column`` as ``output_column``."""

    def __init__(self, settings: EmbedSettings, threads: int | None, text_column: str, output_column: str) -> None:
        self.settings = settings
        self.bilm = settings.load(threads)
        self.text_column = text_column
        self.output_column = output_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        sentences = [_tokens(value) for value in batch.column(self.text_column).to_pylist()]
        layers = self.bilm.embed_sentences(sentences, max(len(sentences), 1), self.settings.precision)
        vectors = [select_layers(sentence, self.settings.output_format) for sentence in layers]
        return batch.append_column(self.output_column, ArrowVariableShapedTensorArray.from_numpy(vectors))


def _tokens(value: object) -> list[str]:
    """A text (split at whitespace) or a sequence of tokens -> a token list."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return [str(token) for token in value]
    raise TypeError(f"expected a text or a list of tokens, found {type(value).__name__}")


def embed_dataset(
    ds: ray.data.Dataset,
    text_column: str = "text",
    *,
    output_column: str = "elmo",
    model: str | None = None,
    options_file: str | None = None,
    weight_file: str | None = None,
    output_format: OutputFormat = "all",
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: Precision = "fp32",
    device: str = "cpu",
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
    concurrency: int = 1,
    num_cpus: int = 1,
) -> ray.data.Dataset:
    """The rows of ``ds`` with the ELMo vectors of ``text_column`` (a text split at whitespace, or a list of
    tokens) in ``output_column``: float32 ``(n_layers, n_tokens, dim)`` for ``output_format="all"``,
    ``(n_tokens, dim)`` for ``"top"`` or ``"average"`` (the layers' mean).

    Runs ``concurrency`` actors, each loading the biLM once and running ``num_cpus`` torch threads (with
    ``device="cuda"``: one GPU each), on batches of ``batch_size`` rows. Lazy, like every Ray Data transform.
    """
    settings = EmbedSettings(
        model=ModelSpec(model, options_file, weight_file),
        output_format=output_format,
        batch_size=batch_size,
        precision=precision,
        device=device,
        token_cache_size=token_cache_size,
    )
    return ds.map_batches(
        _BatchEmbedder,
        fn_constructor_kwargs={
            "settings": settings,
            "threads": num_cpus,
            "text_column": text_column,
            "output_column": output_column,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=concurrency,
        num_cpus=num_cpus,
        num_gpus=int(device.startswith("cuda")),
    )
