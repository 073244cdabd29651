"""Command-line help and errors, progress bars, atomic files, folder locks, fingerprints."""
