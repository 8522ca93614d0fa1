//! The Rust half of the shims' error convention (include/convbert_shim.hpp): a fallible entry
//! point returns 0, or non-zero with a malloc'd message in its `err` out-parameter, which the
//! shim's own `*_free_error` releases. The shims' crates depend on this module at run time.

use std::ffi::{c_char, c_int, CStr};

/// A shim's `*_free_error`.
pub type FreeError = unsafe extern "C" fn(*mut c_char);

/// Runs one shim call; on failure returns the shim's message (freed with `free`).
pub fn check(call: impl FnOnce(*mut *mut c_char) -> c_int, free: FreeError) -> Result<(), String> {
    let mut err: *mut c_char = std::ptr::null_mut();
    if call(&mut err) == 0 {
        Ok(())
    } else {
        // SAFETY: `err` is what the failed call left: null or its message, not yet freed.
        Err(unsafe { take_error(err, free) })
    }
}

/// The message in `err` (null: none, e.g. out of memory while copying it), freed with `free`.
///
/// # Safety
/// `err` is null or a message a shim call wrote, not freed yet, and `free` is that shim's.
pub unsafe fn take_error(err: *mut c_char, free: FreeError) -> String {
    if err.is_null() {
        return "the C++ shim failed without a message (out of memory?)".to_string();
    }
    // SAFETY: a non-null `err` is a NUL-terminated string the shim malloc'd (the contract).
    let message = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed once, by the shim whose allocator made it.
    unsafe { free(err) };
    message
}
