//! Benchmarks of the sync engine; see BENCHMARKS.md.
