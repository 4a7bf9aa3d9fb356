"""Generic helpers below every layer (they import nothing from spacy_elmo): atomic file writes, value checks."""
