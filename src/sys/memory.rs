//! Gives the heap memory a load freed back to the system: glibc keeps freed memory for
//! later allocations, and a load of 10,000 services frees tens of MiB (the TOML tree,
//! the definitions, the lookups) that the event loop never needs again.

/// Returns every whole free page of the heap to the system (glibc's `malloc_trim(0)`,
/// which also releases free pages in the middle of the heap, not only at its top).
/// Costs a walk of the free lists: called after a load, never per connection.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and only reorganises the allocator's own
    // free memory; it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other C libraries give memory back on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
