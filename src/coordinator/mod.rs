//! N/R/W fan-out, quorum counting, deadlines and read repair. Touches storage only by shard messages.
