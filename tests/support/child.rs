//! The `modelgate gateway` binary as a child process, for tests of signals, exit codes and
//! process limits.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::ConfigDir;

/// A gateway process on 127.0.0.1 port 0; killed when dropped.
pub struct ChildGateway {
    child: Child,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl ChildGateway {
    /// Starts `modelgate gateway --config DIR` with `args`; `fd_limit` sets RLIMIT_NOFILE
    /// (soft and hard) in the child before it starts.
    pub async fn start(config: &ConfigDir, args: &[&str], fd_limit: Option<u64>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_modelgate"));
        command
            .args(["gateway", "--config"])
            .arg(config.path())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(limit) = fd_limit {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("start the gateway");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let (api, admin) = loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("the gateway did not start in 30 s:\n{}", log.lock().expect("log")))
                .expect("read the log");
            let Some(line) = line else {
                panic!("the gateway exited:\n{}", log.lock().expect("log"));
            };
            log.lock().expect("log").push_str(&(line.clone() + "\n"));
            if line.contains("modelgate gateway serving") {
                let field = |name: &str| -> SocketAddr {
                    let start = line.find(&format!("{name}=http://")).expect("address in the log") + name.len() + 8;
                    let text = line[start..].split_whitespace().next().expect("address");
                    text.parse().expect("socket address")
                };
                break (field("api"), field("admin"));
            }
        };
        // Keep reading, so the child never blocks on a full pipe.
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log").push_str(&(line + "\n"));
            }
        });
        ChildGateway { child, api, admin, log }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id().expect("the gateway is running")).expect("pid")
    }

    /// Sends a signal to the gateway (by its pid).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory effects.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Waits for the process to exit, at most `limit`; panics with the log if it does not.
    pub async fn exited(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!("the gateway did not exit within {limit:?}:\n{}", self.log()),
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}
