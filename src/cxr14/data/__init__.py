"""Data layer: NIH metadata and splits, image decoding, datasets, cache, transforms, phantoms, download/check."""
