//! The file-descriptor budget: how many client connections fit below `RLIMIT_NOFILE`.
//!
//! Every client connection is a descriptor, and so is every provider connection: a request
//! in flight over plain HTTP holds one (HTTP/2 clients can have many requests in flight on one
//! connection). So half of what is left after a fixed reserve goes to client connections and
//! half to provider connections, and the default stops at [`MAX_AUTO_CONNECTIONS`] for
//! memory.

/// Descriptors kept for everything else: listeners, epoll, eventfds, the watched config files,
/// the Kubernetes API, logs.
pub const RESERVED_FDS: u64 = 64;

/// Connections the admin port holds at most (probes and scrapes; a few at a time).
pub const ADMIN_CONNECTIONS: usize = 32;

/// The automatic cap never exceeds this: at about 15 KB of buffers per idle connection, 16,384
/// connections are about 250 MB, within the chart's 512 MiB memory limit.
pub const MAX_AUTO_CONNECTIONS: usize = 16_384;

/// The smallest cap, however low the descriptor limit.
const MIN_CONNECTIONS: usize = 8;

/// The process's descriptor limit, after raising the soft limit to the hard one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// The limit in force.
    pub soft: u64,
    /// The soft limit before start-up raised it, when it did.
    pub raised_from: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Go's runtime does at start-up) and
/// returns the limit in force; `None` where it cannot be read.
#[cfg(unix)]
pub fn raise_fd_limit() -> Option<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass. It fails (and nothing changes) when the
        // hard limit is above the kernel's nr_open, e.g. RLIM_INFINITY.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some(FdLimit {
                soft: limit.rlim_max,
                raised_from: Some(before),
            });
        }
    }
    Some(FdLimit {
        soft: before,
        raised_from: None,
    })
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> Option<FdLimit> {
    None
}

/// The API listener's connection cap: `requested` (`--max-connections`), or automatic; never
/// more than the descriptors left after the reserve and the admin port. The second value is
/// a warning when the request had to be lowered.
pub fn connection_cap(requested: Option<usize>, fds: Option<FdLimit>) -> (usize, Option<String>) {
    let available = fds.map(|fds| {
        let left = fds.soft.saturating_sub(RESERVED_FDS + ADMIN_CONNECTIONS as u64);
        usize::try_from(left).unwrap_or(usize::MAX).max(MIN_CONNECTIONS)
    });
    match (requested, available) {
        (Some(requested), Some(available)) if requested > available => (
            available,
            Some(format!(
                "--max-connections {requested} is more than the file-descriptor limit allows \
                 ({} descriptors, {RESERVED_FDS} reserved, {ADMIN_CONNECTIONS} for the admin port): \
                 using {available}; raise the limit (ulimit -n) to allow more",
                fds.map_or(0, |f| f.soft)
            )),
        ),
        (Some(requested), _) => (requested.max(1), None),
        (None, Some(available)) => ((available / 2).clamp(MIN_CONNECTIONS, MAX_AUTO_CONNECTIONS), None),
        (None, None) => (MAX_AUTO_CONNECTIONS, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(soft: u64) -> Option<FdLimit> {
        Some(FdLimit {
            soft,
            raised_from: None,
        })
    }

    #[test]
    fn the_automatic_cap_leaves_half_the_descriptors_to_providers() {
        assert_eq!(connection_cap(None, limit(1024)), (464, None));
        assert_eq!(connection_cap(None, limit(256)), (80, None));
        assert_eq!(connection_cap(None, limit(1 << 20)), (MAX_AUTO_CONNECTIONS, None));
        assert_eq!(connection_cap(None, limit(50)).0, MIN_CONNECTIONS);
    }

    #[test]
    fn a_requested_cap_above_the_limit_is_lowered_with_a_warning() {
        assert_eq!(connection_cap(Some(100), limit(1024)), (100, None));
        let (cap, warning) = connection_cap(Some(5000), limit(1024));
        assert_eq!(cap, 928);
        assert!(warning.is_some_and(|w| w.contains("ulimit -n")));
    }
}
