//! Steady load through a Service while a test rolls, fails over or drains the gateways:
//! plain chat completions and paced streams from this process, over keep-alive connections as
//! an application's HTTP client would use them, each answer checked in full. Bounded: a fixed
//! number of workers, plain requests paced, everything stopped by [`Load::finish`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::cluster::wait_for;

/// What to send and what every answer must contain.
#[derive(Clone)]
pub struct Traffic {
    /// The gateway Service and the client key.
    pub gateway: super::Gateway,
    /// Alias for plain requests, and a string each answer's content contains.
    pub plain: (String, String),
    /// Alias for streams (served by the paced upstream), and a string the stream's joined
    /// content contains.
    pub stream: (String, String),
    pub plain_workers: usize,
    pub stream_workers: usize,
    /// Pause between two plain requests of one worker.
    pub pace: Duration,
}

/// Outcome of a load run.
#[derive(Debug, Default)]
pub struct Report {
    pub plain_ok: usize,
    pub streams_ok: usize,
    /// Every failed request: when (since the start), which kind, what went wrong.
    pub failures: Vec<String>,
}

impl Report {
    /// Panics unless every request succeeded and both kinds were served at least `min` times.
    #[track_caller]
    pub fn assert_no_failures(&self, min: usize) {
        assert!(
            self.failures.is_empty(),
            "{} of {} requests failed:\n  {}",
            self.failures.len(),
            self.failures.len() + self.plain_ok + self.streams_ok,
            self.failures.join("\n  ")
        );
        assert!(
            self.plain_ok >= min && self.streams_ok >= min,
            "too little load to prove anything: {self:?}"
        );
    }
}

struct Shared {
    stop: AtomicBool,
    plain_ok: AtomicUsize,
    streams_ok: AtomicUsize,
    failures: Mutex<Vec<String>>,
    started: Instant,
}

impl Shared {
    fn fail(&self, what: &str, error: String) {
        // Both clocks: the offset into the load, and the time of day to match with pod events.
        let at = self.started.elapsed().as_secs_f64();
        let now = jiff::Timestamp::now();
        self.failures
            .lock()
            .expect("failures")
            .push(format!("{at:7.2}s ({now:.3}) {what}: {error}"));
    }
}

/// Load running in a thread of its own (with its own runtime), so the test body can block on
/// kubectl meanwhile.
pub struct Load {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    /// Starts the workers and waits until both kinds of request have succeeded once.
    pub fn start(traffic: Traffic) -> Load {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            plain_ok: AtomicUsize::new(0),
            streams_ok: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            started: Instant::now(),
        });
        let inner = shared.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(run(traffic, inner));
        });
        let load = Load {
            shared,
            thread: Some(thread),
        };
        wait_for("the load to get answers", Duration::from_secs(60), || {
            let plain = load.shared.plain_ok.load(Ordering::Relaxed);
            let streams = load.shared.streams_ok.load(Ordering::Relaxed);
            let failures = load.shared.failures.lock().expect("failures").clone();
            if !failures.is_empty() {
                panic!("the load failed before the test began: {failures:#?}");
            }
            if plain > 0 && streams > 0 {
                Ok(())
            } else {
                Err(format!("{plain} plain, {streams} streams"))
            }
        });
        load
    }

    /// Requests answered so far (plain, streams).
    pub fn answered(&self) -> (usize, usize) {
        (
            self.shared.plain_ok.load(Ordering::Relaxed),
            self.shared.streams_ok.load(Ordering::Relaxed),
        )
    }

    /// Stops the workers (letting requests in flight finish) and reports.
    pub fn finish(mut self) -> Report {
        self.stop_and_join();
        Report {
            plain_ok: self.shared.plain_ok.load(Ordering::Relaxed),
            streams_ok: self.shared.streams_ok.load(Ordering::Relaxed),
            failures: std::mem::take(&mut *self.shared.failures.lock().expect("failures")),
        }
    }

    fn stop_and_join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

async fn run(traffic: Traffic, shared: Arc<Shared>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let url = format!("{}/v1/chat/completions", traffic.gateway.base);
    let mut tasks = Vec::new();
    for _ in 0..traffic.plain_workers {
        let (client, url, shared, traffic) = (client.clone(), url.clone(), shared.clone(), traffic.clone());
        tasks.push(tokio::spawn(async move {
            while !shared.stop.load(Ordering::Relaxed) {
                match plain(&client, &url, &traffic.gateway.key, &traffic.plain.0).await {
                    Ok(content) if content.contains(&traffic.plain.1) => {
                        shared.plain_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(content) => shared.fail("plain", format!("unexpected content {content:?}")),
                    Err(error) => shared.fail("plain", error),
                }
                tokio::time::sleep(traffic.pace).await;
            }
        }));
    }
    for _ in 0..traffic.stream_workers {
        let (client, url, shared, traffic) = (client.clone(), url.clone(), shared.clone(), traffic.clone());
        tasks.push(tokio::spawn(async move {
            while !shared.stop.load(Ordering::Relaxed) {
                match stream(&client, &url, &traffic.gateway.key, &traffic.stream.0).await {
                    Ok(content) if content.contains(&traffic.stream.1) => {
                        shared.streams_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(content) => shared.fail("stream", format!("unexpected content {content:?}")),
                    Err(error) => shared.fail("stream", error),
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

fn body(model: &str, stream: bool) -> String {
    super::chat_body(model, stream)
}

pub async fn plain(client: &reqwest::Client, url: &str, key: &str, model: &str) -> Result<String, String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .bearer_auth(key)
        .body(body(model, false))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("{status}, body: {e:?}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    value["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no content in {text}"))
}

/// A streamed chat completion, read to `[DONE]`: its joined content.
async fn stream(client: &reqwest::Client, url: &str, key: &str, model: &str) -> Result<String, String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .bearer_auth(key)
        .body(body(model, true))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("{status}: {text}"));
    }
    let mut bytes = response.bytes_stream();
    let mut buffer = String::new();
    let mut content = String::new();
    let mut done = false;
    while let Some(chunk) = bytes.next().await {
        let chunk = chunk.map_err(|e| format!("stream broken after {content:?}: {e:?}"))?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let value: serde_json::Value =
                    serde_json::from_str(data).map_err(|e| format!("bad event {data:?}: {e}"))?;
                if value.get("error").is_some() {
                    return Err(format!("error event after {content:?}: {data}"));
                }
                if let Some(text) = value["choices"][0]["delta"]["content"].as_str() {
                    content.push_str(text);
                }
            }
        }
    }
    if done {
        Ok(content)
    } else {
        Err(format!("stream ended without [DONE] after {content:?}"))
    }
}
