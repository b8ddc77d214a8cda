//! `loadgen`: the bundled load generator (DESIGN.md part 9). Being built in issue 4.
fn main() {}
