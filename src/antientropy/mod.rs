//! Anti-entropy with Merkle trees per key range (DESIGN.md part 7). Not built yet: a later issue.
//! Must not edit SSTables directly; it repairs through shard messages like any writer.
