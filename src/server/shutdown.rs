//! Shutdown signalling: SIGTERM and SIGINT set one process-wide flag (signal-hook, async-signal
//! safe); every shard polls it on a short timer and then drains. A second signal while draining
//! is left to the default handler so an impatient operator can still kill the process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often shards look at the flag: bounds the delay between a signal and draining.
pub const POLL: Duration = Duration::from_millis(50);

#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// Registers SIGTERM and SIGINT. On a second signal, `signal_hook::flag::register_conditional_shutdown`
    /// exits the process with status 1.
    pub fn install() -> std::io::Result<Shutdown> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            // Order matters: the conditional exit checks the flag before the flag is set.
            signal_hook::flag::register_conditional_shutdown(sig, 1, flag.clone())?;
            signal_hook::flag::register(sig, flag.clone())?;
        }
        Ok(Shutdown { flag })
    }

    /// A flag nobody signals (tests), triggered with [`Shutdown::trigger`].
    pub fn manual() -> Shutdown {
        Shutdown::default()
    }

    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Resolves once shutdown was requested (polls every [`POLL`]).
    pub async fn wait(&self) {
        while !self.is_triggered() {
            glommio::timer::sleep(POLL).await;
        }
    }
}
