"""Generic helpers below every layer (they import nothing from spacy_elmo): atomic file writes and output checks
(``atomic``), hdf5 files written atomically with full-disk handling (``hdf5``), the UTF-8 text reader (``text``),
value checks (``checks``)."""
