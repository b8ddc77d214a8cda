//! Executors per core, pinning, the shard mesh, timers, and the `Disk`, `Transport` and `Clock`
//! traits that let tests replace the outside world. Knows no keys or formats.

pub mod clock;
pub mod clock_glommio;
pub mod disk;
pub mod disk_glommio;
pub mod disk_sim;
pub mod executor;
pub mod mesh;
pub mod tcp;
pub mod transport;
