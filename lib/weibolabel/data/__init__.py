"""Users' files in, validated rows out: one reader per format, datasets, the label schema, labeled rows, folds."""
