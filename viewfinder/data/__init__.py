"""Data sets: offline image-text loaders with fixed splits, users' own caption folders and CSVs,
the sample photo folder, and cached frozen-tower features. Used by eval and train alike."""
