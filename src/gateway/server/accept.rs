//! The accept loop: admits connections up to the cap (making room by closing the ones that
//! have waited longest), and backs off instead of spinning when accepting fails.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::connection;
use super::registry::Registry;
use super::sniff::Builders;
use super::Served;

/// First pause after a failed accept; doubled on each failure in a row, up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts until the task is aborted (which closes the listener).
pub(super) async fn accept<S>(listener: TcpListener, registry: Arc<Registry>, builders: Arc<Builders>, service: S)
where
    S: Served,
{
    // Closing a few percent at a time keeps the scan for the oldest off the per-accept path.
    let batch = (registry.cap / 32).max(1);
    let mut backoff = MIN_BACKOFF;
    let mut failures: u64 = 0;
    loop {
        if registry.live() >= registry.cap && registry.shed(batch) == 0 {
            // Every connection is serving a request: leave new ones in the listen backlog
            // until one ends.
            let removed = registry.removed.notified();
            if registry.live() >= registry.cap {
                removed.await;
            }
            continue;
        }
        match listener.accept().await {
            Ok((stream, _peer)) => {
                if failures > 0 {
                    tracing::info!(listener = ?registry.metrics().name(), failures, "accepting connections again");
                    failures = 0;
                    backoff = MIN_BACKOFF;
                }
                let _ = stream.set_nodelay(true);
                let conn = registry.admit();
                tokio::spawn(connection::serve(
                    stream,
                    registry.clone(),
                    conn,
                    builders.clone(),
                    service.clone(),
                ));
            }
            Err(error) if per_connection(&error) => {}
            Err(error) => {
                registry.metrics().accept_error();
                if out_of_descriptors(&error) {
                    // Providers' connections count too: make room among the clients.
                    registry.shed(batch);
                }
                if failures == 0 {
                    tracing::warn!(
                        listener = ?registry.metrics().name(),
                        open = registry.open(),
                        %error,
                        "cannot accept connections; retrying with backoff (see --max-connections and the file-descriptor limit)"
                    );
                }
                failures += 1;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Errors that concern only the connection being accepted (the client gave up): try the next.
fn per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

/// The process or the system is out of descriptors or socket memory.
fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_told_apart() {
        assert!(per_connection(&io::Error::from(io::ErrorKind::ConnectionAborted)));
        assert!(!per_connection(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(out_of_descriptors(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!out_of_descriptors(&io::Error::from(io::ErrorKind::ConnectionReset)));
    }
}
