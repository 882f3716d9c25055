//! [`Slot`]: a value in service that a reload replaces as a whole (the pipeline, the ingest
//! credentials). A reader takes the current value once and keeps using it, so a swap never
//! changes a request half-way.

use std::sync::{Arc, RwLock};

/// The value in service, swappable at run time.
pub struct Slot<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Slot<T> {
    pub fn new(value: T) -> Slot<T> {
        Slot {
            current: RwLock::new(Arc::new(value)),
        }
    }

    /// The value in service now.
    pub fn current(&self) -> Arc<T> {
        // A poisoned lock only means a panic elsewhere mid-swap; the Arc inside is still whole.
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Put `value` in service; readers that took the old one keep it until they drop it.
    pub fn swap(&self, value: T) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}
