//! Operating-system limits a proxy depends on: file descriptors (every
//! connection is one, a proxied one two), and the connection limit they
//! size by default.

/// Every connection is a file descriptor (two when it is proxied): raise
/// the soft limit to the hard one, as nginx's `worker_rlimit_nofile` and Go
/// programs do, so the default 1,024 does not cap concurrent calls. Returns
/// the soft limit now in effect (0 if it cannot be read).
#[allow(unsafe_code)]
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let old = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return old;
            }
            tracing::debug!(
                "file descriptor limit raised from {old} to {}",
                lim.rlim_max
            );
        }
    }
    lim.rlim_cur
}

/// `max_connections` when the config sets none: the descriptor limit less
/// a reserve for upstream connections, listeners, logs and the store (a
/// client connection needs an upstream one only while a request of it is
/// in flight, and the upstream pool is shared).
pub fn default_max_connections() -> u64 {
    let fds = raise_fd_limit();
    (fds - fds / 8).saturating_sub(64).max(64)
}
