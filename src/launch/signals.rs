//! SIGINT, SIGTERM and SIGHUP to `shardsweep run`. Once [`catch`] is called they no longer end
//! the runner outright (which would leave the point's launcher and ranks running in their own
//! process group); they are counted here, and the supervisor forwards the first to the point's
//! group, waits a grace period, kills what is left and finalises the point as `cancelled`.
//! A second signal skips the grace period.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

static COUNT: AtomicU32 = AtomicU32::new(0);
static FIRST: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only atomics here: a signal handler may do nothing else safely.
    let _ = FIRST.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Catches SIGINT, SIGTERM and SIGHUP in this process until the returned guard is dropped;
/// then they end the process again as by default (e.g. during the analysis after a sweep).
#[must_use = "the signals are caught only while the guard lives"]
pub fn catch() -> Caught {
    for signal in SIGNALS {
        // SAFETY: a handler that touches atomics only; sigaction with an empty mask.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    Caught
}

/// While it lives, the signals are caught; see [`catch`].
pub struct Caught;

impl Drop for Caught {
    fn drop(&mut self) {
        for signal in SIGNALS {
            // SAFETY: restoring the default disposition.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
}

/// A stop request: the first signal received and how many have come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupt {
    pub signal: i32,
    pub count: u32,
}

impl Interrupt {
    pub fn name(self) -> &'static str {
        match self.signal {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            libc::SIGHUP => "SIGHUP",
            _ => "a signal",
        }
    }
}

/// The stop request so far, if any signal came since [`catch`].
pub fn interrupted() -> Option<Interrupt> {
    let count = COUNT.load(Ordering::SeqCst);
    (count > 0).then(|| Interrupt { signal: FIRST.load(Ordering::SeqCst), count })
}
