"""Bulk embedding: text files into hdf5 in the layout of AllenNLP's ``elmo`` command.

- :mod:`.writer`: the file layout (``embed_file``, ``select_layers``, the output formats);
- :mod:`.shards`: settings, line-range shards and the local runner (this process or worker processes);
- :mod:`.directory`: ``embed_dir``, a directory of files with resume;
- :mod:`.ray_actors`: Ray actors for ``embed_dir`` and ``embed_dataset`` for Ray Data (imported only when used,
  ``pip install "spacy-elmo[ray]"``).
"""

from ..bilm.outputs import OUTPUT_FORMATS, select_layers
from .input_dir import Summary, embed_dir
from .shards import EmbedSettings
from .writer import embed_file

__all__ = ["OUTPUT_FORMATS", "EmbedSettings", "Summary", "embed_dir", "embed_file", "select_layers"]
