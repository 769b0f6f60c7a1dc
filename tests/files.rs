//! Standalone mode as careless operators and their tools treat its files: a file truncated in
//! place and written in pieces, deleted and written again, a whole directory replaced, all
//! under load; and the removals that are meant, after the settle delay or at once.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modelgate::manifest::SettleOptions;
use support::*;

const RELOAD: Duration = Duration::from_secs(15);
const HELD: &str = "modelgate_config_held_objects";

fn aliases() -> [String; 3] {
    [
        alias("one", "{target: mock/m1}"),
        alias("two", "{target: mock/m2}"),
        alias("three", "{target: mock/m3}"),
    ]
}

/// Writes `text` at the end of `name`, in place (no temporary file, no rename).
fn append(config: &ConfigDir, name: &str, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(config.path().join(name))
        .expect("open for appending");
    file.write_all(text.as_bytes()).expect("append");
}

/// Waits until `series` reads `value`.
async fn until(gateway: &modelgate::gateway::Running, series: &str, value: f64) {
    eventually(RELOAD, &format!("{series} = {value}"), || async {
        (metric(gateway, series).await == value).then_some(())
    })
    .await;
}

/// Clients asking for every alias in turn, as fast as they can, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(gateway: &modelgate::gateway::Running, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let url = format!("http://{}/v1/chat/completions", gateway.addr);
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failures, url) = (stop.clone(), ok.clone(), failures.clone(), url.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    // Bounded even if nobody stops it.
                    for i in 0..200_000usize {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let model = ["one", "two", "three"][i % 3];
                        let answer = client.post(&url).body(chat(model)).send().await;
                        match answer {
                            Ok(response) if response.status() == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(response) => {
                                let status = response.status();
                                let body = response.text().await.unwrap_or_default();
                                failures.lock().expect("lock").push(format!("{model}: {status} {body}"));
                            }
                            Err(e) => failures.lock().expect("lock").push(format!("{model}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    /// Stops the clients; returns how many requests succeeded, and every failure.
    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a client task");
        }
        let failures = self.failures.lock().expect("lock").clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_deleting_and_replacing_the_files_under_load_fails_no_request() {
    let config = ConfigDir::new();
    config.write("providers.yaml", &mock_provider());
    let [one, two, three] = aliases();
    let all = format!("{one}{two}{three}");
    config.write("aliases.yaml", &all);
    let delay = Duration::from_secs(2);
    let settle = SettleOptions {
        delay,
        allow_empty: false,
    };
    let gateway = start_gateway_settling(&config, modelgate::gateway::DEFAULT_MAX_BODY_BYTES, settle).await;
    let load = Load::start(&gateway, 4);
    let rejected = r#"modelgate_config_reloads_total{result="rejected"}"#;

    // `generate > aliases.yaml`: truncated in place, then written in pieces.
    std::fs::File::create(config.path().join("aliases.yaml")).expect("truncate");
    until(&gateway, HELD, 3.0).await;
    append(&config, "aliases.yaml", &one);
    until(&gateway, HELD, 2.0).await;
    // Cut inside a document: not YAML, so the reload is rejected.
    let (head, tail) = two.split_at(two.find("{name:").expect("name") + 4);
    append(&config, "aliases.yaml", head);
    until(&gateway, rejected, 1.0).await;
    append(&config, "aliases.yaml", &format!("{tail}{three}"));
    until(&gateway, HELD, 0.0).await;

    // `git checkout`, `vim`: deleted, then written again.
    std::fs::remove_file(config.path().join("aliases.yaml")).expect("rm");
    until(&gateway, HELD, 3.0).await;
    config.write("aliases.yaml", &all);
    until(&gateway, HELD, 0.0).await;

    // The whole directory replaced: its watch is renewed when it comes back.
    std::fs::remove_dir_all(config.path()).expect("rm -r");
    until(&gateway, HELD, 4.0).await;
    std::fs::create_dir(config.path()).expect("mkdir");
    config.write("providers.yaml", &mock_provider());
    config.write("aliases.yaml", &all);
    until(&gateway, HELD, 0.0).await;
    // Edits inside the new directory are seen.
    config.write("aliases.yaml", &format!("{one}{two}"));
    until(&gateway, HELD, 1.0).await;
    config.write("aliases.yaml", &all);
    until(&gateway, HELD, 0.0).await;

    let (ok, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "the load ran ({ok} requests)");

    // A removal that is meant takes effect once the file has stayed gone for the delay.
    let deleted = Instant::now();
    std::fs::remove_file(config.path().join("aliases.yaml")).expect("rm");
    until(&gateway, HELD, 3.0).await;
    let (status, body) = post(&gateway, "/v1/chat/completions", &chat("two")).await;
    assert_eq!(status, 200, "still held: {body}");
    eventually(RELOAD, "the deleted aliases to go", || async {
        let (status, _) = post(&gateway, "/v1/chat/completions", &chat("two")).await;
        (status == 404).then_some(())
    })
    .await;
    assert!(
        deleted.elapsed() >= delay,
        "removed after {:?}, before the settle delay",
        deleted.elapsed()
    );
    assert_eq!(metric(&gateway, HELD).await, 0.0);
    let (status, _) = post(&gateway, "/v1/chat/completions", &chat("one")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn with_allow_empty_a_deleted_or_emptied_file_removes_its_aliases_at_once() {
    let config = ConfigDir::new();
    config.write("providers.yaml", &mock_provider());
    let [one, two, _] = aliases();
    config.write("one.yaml", &one);
    config.write("two.yaml", &two);
    // A delay far longer than the test waits: only --allow-empty can remove them in time.
    let settle = SettleOptions {
        delay: Duration::from_secs(3600),
        allow_empty: true,
    };
    let gateway = start_gateway_settling(&config, modelgate::gateway::DEFAULT_MAX_BODY_BYTES, settle).await;
    assert_eq!(post(&gateway, "/v1/chat/completions", &chat("one")).await.0, 200);

    std::fs::remove_file(config.path().join("one.yaml")).expect("rm");
    eventually(RELOAD, "'one' removed at once", || async {
        (post(&gateway, "/v1/chat/completions", &chat("one")).await.0 == 404).then_some(())
    })
    .await;
    std::fs::File::create(config.path().join("two.yaml")).expect("truncate");
    eventually(RELOAD, "'two' removed at once", || async {
        (post(&gateway, "/v1/chat/completions", &chat("two")).await.0 == 404).then_some(())
    })
    .await;
    assert_eq!(metric(&gateway, HELD).await, 0.0);
}

/// `created` of each listed model.
async fn created(gateway: &modelgate::gateway::Running) -> Vec<(String, i64)> {
    let (_, text) = get(gateway.addr, "/v1/models").await;
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| {
            (
                m["id"].as_str().expect("id").to_string(),
                m["created"].as_i64().expect("created"),
            )
        })
        .collect()
}

#[tokio::test]
async fn aliases_from_files_are_listed_with_a_stable_creation_time() {
    let config = ConfigDir::new();
    config.write("providers.yaml", &mock_provider());
    let [one, two, _] = aliases();
    config.write("aliases.yaml", &one);
    // Written an hour ago, so that an edit now changes the file's time.
    let file = config.path().join("aliases.yaml");
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(an_hour_ago))
        .expect("set the modification time");
    let modified = an_hour_ago
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let gateway = start_gateway(&config).await;
    assert_eq!(
        created(&gateway).await,
        [("one".to_string(), modified)],
        "the file's modification time"
    );

    // An edit that adds an alias keeps the first one's time; the new one gets the edit's.
    config.write("aliases.yaml", &format!("{one}{two}"));
    let listed = eventually(RELOAD, "'two' listed", || async {
        let listed = created(&gateway).await;
        (listed.len() == 2).then_some(listed)
    })
    .await;
    assert_eq!(listed[0], ("one".to_string(), modified), "{listed:?}");
    assert_eq!(listed[1].0, "two");
    assert!(listed[1].1 >= modified + 3000, "{listed:?}");
}
