//! Graceful shutdown, as one small type every long-running task listens to (after mini-redis's
//! `shutdown.rs`): the server, the store writer, the sink drivers and their deliveries each hold
//! a [`Shutdown`], and whoever owns the [`ShutdownTrigger`] tells them all at once.
//!
//! A `Shutdown` is a flag that turns on once and never off: [`Shutdown::is_shutdown`] reads it
//! without waiting, [`Shutdown::recv`] waits for it. Dropping the trigger without firing it
//! counts as shutdown too, so a task never waits for a signal that can no longer come.

use tokio::sync::watch;

/// Listens for the shutdown signal. Cheap to clone; every clone sees the same signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
}

/// Fires the signal every [`Shutdown`] made with it listens to.
#[derive(Debug)]
pub struct ShutdownTrigger {
    signal: watch::Sender<bool>,
}

impl Shutdown {
    /// A new signal: the trigger that fires it and a listener.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (signal, listener) = watch::channel(false);
        (ShutdownTrigger { signal }, Shutdown { signal: listener })
    }

    /// A listener that is never signalled (for work that runs to its end, such as a replay).
    pub fn never() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        // Keep the sender alive for good: its drop would count as a signal.
        std::mem::forget(trigger);
        shutdown
    }

    /// Whether shutdown has begun (or the trigger is gone).
    pub fn is_shutdown(&self) -> bool {
        *self.signal.borrow() || self.signal.has_changed().is_err()
    }

    /// Wait until shutdown begins; returns at once if it already has.
    pub async fn recv(&mut self) {
        // An error means the trigger was dropped: shut down as well.
        let _ = self.signal.wait_for(|s| *s).await;
    }

    /// Sleep for `d`; false (early) when shutdown begins first.
    pub async fn sleep(&mut self, d: std::time::Duration) -> bool {
        if self.is_shutdown() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.recv() => false,
        }
    }
}

impl ShutdownTrigger {
    /// Begin shutdown: every listener's `recv` returns and `is_shutdown` turns true.
    pub fn fire(&self) {
        self.signal.send_replace(true);
    }

    /// Whether [`fire`](Self::fire) was called.
    pub fn is_fired(&self) -> bool {
        *self.signal.borrow()
    }

    /// A new listener of this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            signal: self.signal.subscribe(),
        }
    }

    /// Resolves once every listener is gone.
    pub async fn closed(&self) {
        self.signal.closed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_listener_sees_the_signal_once_fired() {
        let (trigger, mut a) = Shutdown::new();
        let mut b = trigger.subscribe();
        assert!(!a.is_shutdown() && !b.is_shutdown());
        trigger.fire();
        assert!(a.is_shutdown() && b.is_shutdown());
        a.recv().await;
        b.recv().await;
        assert!(
            !a.sleep(Duration::from_secs(60)).await,
            "sleep ends at once after shutdown"
        );
    }

    #[tokio::test]
    async fn dropping_the_trigger_counts_as_shutdown() {
        let (trigger, mut s) = Shutdown::new();
        drop(trigger);
        assert!(s.is_shutdown());
        tokio::time::timeout(Duration::from_secs(1), s.recv()).await.unwrap();
    }

    #[tokio::test]
    async fn never_is_never_signalled() {
        let mut s = Shutdown::never();
        assert!(!s.is_shutdown());
        assert!(s.sleep(Duration::from_millis(1)).await);
    }
}
