//! The C library's local time (localtime_r, tzset and strftime), and the kernel's clock.

/// The broken-down local time of a Unix time, or `None` if libc cannot give one.
pub fn localtime(secs: i64) -> Option<libc::tm> {
    let time = secs as libc::time_t;
    let mut tm = zero_tm();
    // SAFETY: both pointers are valid for the call; localtime_r is reentrant.
    if unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
        return None;
    }
    Some(tm)
}

/// An all-zero `tm`: what a failed localtime_r leaves.
pub fn zero_tm() -> libc::tm {
    // SAFETY: an all-zero `tm` is a valid value (integers and a null tm_zone pointer).
    unsafe { std::mem::zeroed() }
}

/// Rereads TZ and /etc/localtime, so a changed zone shows from the next time on.
pub fn tzset() {
    // SAFETY: glibc's tzset takes its time zone lock while it rereads the zone.
    unsafe { c_tzset() };
}

unsafe extern "C" {
    #[link_name = "tzset"]
    fn c_tzset();
}

/// strftime(3) of `tm` into `buffer`; the bytes written (0 if they did not fit).
pub fn strftime(tm: &libc::tm, format: &std::ffi::CStr, buffer: &mut [u8]) -> usize {
    // SAFETY: strftime writes at most buffer.len() bytes into the live buffer and
    // returns how many; the format is NUL-terminated and `tm` a valid value.
    unsafe {
        libc::strftime(
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            format.as_ptr(),
            tm,
        )
    }
}

/// CLOCK_MONOTONIC as a duration since boot: the clock systemd's `MONOTONIC_USEC` is on
/// (`Instant` has no public epoch).
pub fn monotonic() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the pointer is to a live local timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Now, in nanoseconds since the epoch, as the kernel's clock says: the one it stamps
/// files with (the cache of included files compares the two). Asked of the kernel
/// itself, not through the C library, which a preloaded library (libfaketime, as in
/// CI) may shift away from the files' times.
pub fn kernel_realtime_ns() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is, and keeps no pointer.
    let failed = unsafe {
        libc::syscall(
            libc::SYS_clock_gettime,
            libc::CLOCK_REALTIME,
            &mut now as *mut libc::timespec,
        )
    } != 0;
    if failed {
        // Never on Linux; a moment every file seems newer than makes every file racy.
        return i64::MIN;
    }
    now.tv_sec.saturating_mul(1_000_000_000) + now.tv_nsec
}
