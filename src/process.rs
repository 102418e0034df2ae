//! Process hygiene at start-up, before any fd is opened.

use crate::sys;

/// Servers must get exactly fds 0-2. Make sure 0-2 exist (so no socket ever lands
/// there) and that nothing oxinetd inherited above them can leak into a server.
pub fn sanitize_fds() {
    sys::fd::fill_standard_fds();
    sys::fd::cloexec_from(3);
}
