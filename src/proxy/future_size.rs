//! Test support: the size of the future an `async fn` returns. Tests on
//! the connection and request paths use it as a tripwire, because those
//! futures are moved whole (into a task, or per request) and a parked or
//! idle connection costs its task's size.

use std::future::Future;

/// An `async fn` cast to a function pointer (`f as fn(A, B) -> _`).
pub(crate) trait AsyncFnPointer {
    /// Bytes of the future it returns.
    fn future_size(&self) -> usize;
}

macro_rules! async_fn_pointer {
    ($($arg:ident),*) => {
        impl<$($arg,)* F: Future> AsyncFnPointer for fn($($arg),*) -> F {
            fn future_size(&self) -> usize {
                std::mem::size_of::<F>()
            }
        }
    };
}

async_fn_pointer!(A, B, C);
async_fn_pointer!(A, B, C, D);

/// `future_size(handle as fn(A, B, C) -> _)`.
pub(crate) fn future_size(f: impl AsyncFnPointer) -> usize {
    f.future_size()
}
