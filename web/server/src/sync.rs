//! The one lock helper: a `std::sync::Mutex` guard that survives a panic of a former holder.
//! Every lock here guards plain data that a panic cannot leave half-written (maps, counters,
//! caches replaced whole), so the data is still good and the poison is ignored.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
