//! Version vectors, compare, merge, siblings. Never reads the wall clock: times come from callers.
