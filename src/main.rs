//! The `modelgate` command: gateway, validate, crds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use modelgate::gateway::egress::{EgressOptions, IpNet};
use modelgate::gateway::server::DEFAULT_MAX_HEADER_BYTES;
use modelgate::gateway::tenancy::{AuthMode, FailureMode, StoreKind, TenancyOptions};
use modelgate::gateway::{self, GatewayOptions, ServerOptions, Shutdown, Stopped, DEFAULT_MAX_BODY_BYTES};

#[derive(Parser)]
#[command(
    name = "modelgate",
    version,
    about = "Stable, meaningful names for LLM models: an OpenAI-compatible gateway and Kubernetes operator"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "MODELGATE_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Which objects to read in a cluster.
#[derive(clap::Args, Clone, Debug)]
struct ScopeArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(long, env = "MODELGATE_NAMESPACE")]
    namespace: Option<String>,
    /// Only LLMProviders and ModelAliases matching this label selector.
    #[arg(long, env = "MODELGATE_SELECTOR")]
    selector: Option<String>,
}

impl From<ScopeArgs> for modelgate::kubernetes::Scope {
    fn from(args: ScopeArgs) -> Self {
        modelgate::kubernetes::Scope {
            namespace: args.namespace,
            selector: args.selector,
        }
    }
}

/// In-cluster: how this gateway replica reports what it serves (a GatewayReplica, read by the
/// controller for the Programmed condition).
#[derive(clap::Args, Clone, Debug)]
struct ReplicaArgs {
    /// This replica's report name (default: the pod name, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    replica_name: Option<String>,
    /// Namespace of the report: where the controller reads them, its --gateway-namespace
    /// (default: POD_NAMESPACE, else the ServiceAccount's namespace in a pod, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    replica_namespace: Option<String>,
    /// How long the report stands without renewal; it is renewed every third of that.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    replica_lease: Duration,
    /// The pod's uid (from the downward API): the pod then owns its report.
    #[arg(long, env = "POD_UID", hide = true)]
    pod_uid: Option<String>,
    /// Do not report what this replica serves (Programmed conditions then do not count it).
    #[arg(long)]
    no_replica_report: bool,
}

impl ReplicaArgs {
    fn options(self) -> Option<gateway::report::ReportOptions> {
        if self.no_replica_report {
            return None;
        }
        let pod = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty());
        let name = self.replica_name.filter(|n| !n.is_empty()).unwrap_or_else(host_and_pid);
        Some(gateway::report::ReportOptions {
            // Owned by the pod only when named after it.
            pod_uid: self.pod_uid.filter(|_| pod.as_deref() == Some(name.as_str())),
            name: dns_name(&name),
            namespace: self.replica_namespace.unwrap_or_else(own_namespace),
            lease: self.replica_lease.max(Duration::from_secs(3)),
        })
    }
}

/// `<host name>-<pid>`: a name no other process on the cluster has at the same time.
fn host_and_pid() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "modelgate".to_string());
    format!("{host}-{}", std::process::id())
}

/// `name` made a valid object name: lower case, other characters as '-', at most 253.
fn dns_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .take(253)
        .collect();
    let trimmed = cleaned.trim_matches(|c| c == '-' || c == '.');
    if trimmed.is_empty() {
        "gateway".to_string()
    } else {
        trimmed.to_string()
    }
}

/// How the gateway treats client connections, and how it shuts down.
#[derive(clap::Args, Clone, Debug)]
struct ServerArgs {
    /// A request's line and headers must arrive within this, from the accept (on a keep-alive
    /// connection: from the request's first byte); otherwise the connection is closed.
    #[arg(long, default_value = "10s", value_parser = positive_duration, env = "MODELGATE_HEADER_TIMEOUT")]
    header_timeout: Duration,
    /// A request's body must arrive within this, from the end of its headers; otherwise the
    /// client gets a 408.
    #[arg(long, default_value = "60s", value_parser = positive_duration, env = "MODELGATE_BODY_TIMEOUT")]
    body_timeout: Duration,
    /// A keep-alive connection with no request (or a client that reads nothing of its
    /// response) for this long is closed.
    #[arg(long, default_value = "5m", value_parser = positive_duration, env = "MODELGATE_IDLE_TIMEOUT")]
    idle_timeout: Duration,
    /// HTTP/2 connections are pinged this often (0s: never).
    #[arg(long, default_value = "30s", value_parser = duration, env = "MODELGATE_HTTP2_KEEPALIVE_INTERVAL")]
    http2_keepalive_interval: Duration,
    /// An HTTP/2 connection whose ping is not answered within this is closed.
    #[arg(long, default_value = "10s", value_parser = duration, env = "MODELGATE_HTTP2_KEEPALIVE_TIMEOUT")]
    http2_keepalive_timeout: Duration,
    /// Client connections on the API port at most (default: half the file descriptors left
    /// after a reserve, at most 16384). At the cap, the connections that have waited longest
    /// without sending a request are closed to make room.
    #[arg(long, env = "MODELGATE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Largest request line plus headers, in bytes (a JSON 431 above it).
    #[arg(long, default_value_t = DEFAULT_MAX_HEADER_BYTES, value_parser = header_bytes, env = "MODELGATE_MAX_HEADER_BYTES")]
    max_header_bytes: usize,
    /// After SIGTERM, keep accepting for this long while /readyz fails (so endpoints and
    /// proxies stop sending new connections first).
    #[arg(long, default_value = "0s", value_parser = duration, env = "MODELGATE_SHUTDOWN_DELAY")]
    shutdown_delay: Duration,
    /// Then let in-flight requests finish within this; streams still running get an error
    /// event, and the gateway exits.
    #[arg(long, default_value = "30s", value_parser = duration, env = "MODELGATE_SHUTDOWN_GRACE")]
    shutdown_grace: Duration,
}

impl From<ServerArgs> for ServerOptions {
    fn from(args: ServerArgs) -> Self {
        ServerOptions {
            header_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            idle_timeout: args.idle_timeout,
            http2_keepalive_interval: args.http2_keepalive_interval,
            http2_keepalive_timeout: args.http2_keepalive_timeout,
            max_connections: args.max_connections,
            max_header_bytes: args.max_header_bytes,
            shutdown: Shutdown {
                delay: args.shutdown_delay,
                grace: args.shutdown_grace,
            },
        }
    }
}

/// Who may call the gateway, and where usage is counted.
#[derive(clap::Args, Clone, Debug)]
struct TenancyArgs {
    /// `api-key`: requests need a Team's key (Authorization: Bearer, or x-api-key). `none`:
    /// everyone is served. Default: none with --config (the quickstart), api-key in a cluster.
    #[arg(long, value_enum, env = "MODELGATE_AUTH")]
    auth: Option<AuthMode>,
    /// Where limits, credits and usage are counted: `memory` (this process) or
    /// `redis://HOST:PORT` (shared by every replica).
    #[arg(long, default_value = "memory", env = "MODELGATE_USAGE_STORE")]
    usage_store: StoreKind,
    /// While Redis is unreachable: `open` serves on this replica's own counters, `closed`
    /// refuses metered requests with 503.
    #[arg(long, value_enum, default_value = "open", env = "MODELGATE_USAGE_STORE_FAILURE")]
    usage_store_failure: FailureMode,
    /// Longest wait for the usage store on the request path, e.g. 250ms.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration, env = "MODELGATE_USAGE_STORE_TIMEOUT")]
    usage_store_timeout: std::time::Duration,
    /// Token the read API (/api/... on the admin port) requires as `Authorization: Bearer`.
    #[arg(long, env = "MODELGATE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

impl TenancyArgs {
    fn options(self, standalone: bool) -> TenancyOptions {
        TenancyOptions {
            auth: self
                .auth
                .unwrap_or(if standalone { AuthMode::None } else { AuthMode::ApiKey }),
            store: self.usage_store,
            failure: self.usage_store_failure,
            store_timeout: self.usage_store_timeout,
            admin_token: self
                .admin_token
                .filter(|t| !t.is_empty())
                .map(modelgate::secret::SecretString::new),
        }
    }
}

/// A duration like `10s`, `500ms` or `5m`.
fn duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

/// A duration above zero (a zero timeout would close every connection at once).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if duration.is_zero() => Err("must be more than zero, e.g. 10s".to_string()),
        Ok(duration) => Ok(duration),
        Err(e) => Err(format!("{e} (write e.g. 500ms, 10s or 5m)")),
    }
}

/// A header limit of at least 1 KiB (a request line and `Host` alone take some).
fn header_bytes(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(bytes) if bytes >= 1024 => Ok(bytes),
        Ok(_) => Err("must be at least 1024".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for a Team: prints the key once (on stderr) and the Secret manifest that
    /// holds only its hash (on stdout, for `| kubectl apply -f -`).
    Create {
        /// The Team (in --namespace) the key belongs to.
        #[arg(long)]
        team: String,
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// Name of the Secret (default: key-<team>-<6 random characters>).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ImportFrom {
    Arch,
    Litellm,
    AliasApi,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ImportKeys {
    Secret,
    Env,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

// Parsed once at start-up; the gateway's many flags make its variant large, which costs nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible API, routing each request by its alias.
    Gateway {
        /// Manifest file or directory (LLMProvider, ModelAlias, Secret); repeatable. Watched for
        /// edits. Without it the gateway serves what the controller published in the cluster
        /// (in-cluster config or KUBECONFIG).
        #[arg(long, short = 'c', env = "MODELGATE_CONFIG", value_delimiter = ',')]
        config: Vec<PathBuf>,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Address of the OpenAI-compatible API.
        #[arg(long, default_value = "0.0.0.0:12000", env = "MODELGATE_LISTEN")]
        listen: SocketAddr,
        /// Address of /healthz, /readyz, /metrics and /debug/targets.
        #[arg(long, default_value = "0.0.0.0:12001", env = "MODELGATE_ADMIN_LISTEN")]
        admin_listen: SocketAddr,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES, env = "MODELGATE_MAX_BODY_BYTES")]
        max_body_bytes: usize,
        /// With --config: how long an object removed from the files (its file deleted or
        /// emptied, its directory gone, its document removed) keeps serving its last good
        /// route before it is removed, so a file rewritten in place never drops its routes.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, env = "MODELGATE_SETTLE_DELAY")]
        settle_delay: std::time::Duration,
        /// With --config: a deleted or emptied file (or a deleted directory) removes its
        /// objects at the next reload, without waiting for --settle-delay.
        #[arg(long, env = "MODELGATE_ALLOW_EMPTY")]
        allow_empty: bool,
        /// Leave out the `x-modelgate-target: <provider>/<model>` response header, which
        /// names the target that served each response.
        #[arg(long, env = "MODELGATE_NO_TARGET_HEADER")]
        no_target_header: bool,
        #[command(flatten)]
        replica: ReplicaArgs,
        /// A network (CIDR, or one address) providers may be in even where the egress policy
        /// refuses it: loopback, the pod's own addresses, link-local or metadata addresses.
        /// Repeatable, or comma-separated.
        #[arg(long = "allow-upstream-cidr", env = "MODELGATE_ALLOW_UPSTREAM_CIDR", value_delimiter = ',', value_parser = parse_network)]
        allow_upstream_cidr: Vec<IpNet>,
        /// How many modelgate gateways a request may already have passed (its modelgate-hops
        /// header). 0: any request that comes from a modelgate gateway is refused with 508,
        /// so a provider pointing back at a gateway cannot loop; raise it (up to 10) to chain
        /// gateways on purpose.
        #[arg(long, default_value_t = 0, env = "MODELGATE_MAX_HOPS", value_parser = clap::value_parser!(u32).range(0..=10))]
        max_hops: u32,
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        tenancy: TenancyArgs,
    },
    /// Validate LLMProviders and ModelAliases in the cluster, write their status and publish
    /// their compiled routes for the gateways.
    Controller {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, default_value = "0.0.0.0:12002", env = "MODELGATE_ADMIN_LISTEN")]
        admin_listen: SocketAddr,
        /// Run without leader election (only ever one replica).
        #[arg(long)]
        no_leader_election: bool,
        /// Name of the Lease replicas elect a leader with.
        #[arg(long, default_value = "modelgate-controller", env = "MODELGATE_LEASE_NAME")]
        lease_name: String,
        /// Namespace of the Lease (default: POD_NAMESPACE, else the ServiceAccount's namespace
        /// when running in a pod, else `default`).
        #[arg(long, env = "POD_NAMESPACE")]
        lease_namespace: Option<String>,
        /// This replica's identity in the Lease (default: the pod name, else host name and pid).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// How long an object waits for a missing LLMProvider, Secret, key or target alias
        /// (Reconciling) before it is reported Stalled.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration, env = "MODELGATE_STALL_AFTER")]
        stall_after: Duration,
        /// Namespace of the gateways' GatewayReplica reports, for the Programmed condition
        /// (default: the Lease's namespace).
        #[arg(long)]
        gateway_namespace: Option<String>,
        /// The gateways' shared usage store (redis://HOST:PORT): Teams' usage for their status.
        #[arg(long, env = "MODELGATE_USAGE_STORE", conflicts_with = "gateway_admin_url")]
        usage_store: Option<String>,
        /// With the memory store and one gateway replica: that gateway's admin URL (e.g.
        /// http://modelgate-gateway-metrics:12001), whose read API gives Teams' usage.
        #[arg(long, env = "MODELGATE_GATEWAY_ADMIN_URL")]
        gateway_admin_url: Option<String>,
        /// The gateway's --admin-token, for --gateway-admin-url.
        #[arg(long, env = "MODELGATE_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// How often Teams' usage is read, e.g. 30s (and at most how often it changes their status).
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "MODELGATE_USAGE_INTERVAL")]
        usage_interval: std::time::Duration,
    },
    /// Check manifests with the same compiler the gateway and controller use; exit 1 on any error.
    Validate {
        /// Manifest files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also require every provider key: Secrets must be in the files, env variables set.
        #[arg(long)]
        check_keys: bool,
    },
    /// Convert an Arch gateway or LiteLLM proxy configuration, or an alias admin API's JSON,
    /// into LLMProviders and ModelAliases, printed as YAML; what cannot be carried over is
    /// reported on stderr.
    Import {
        /// The format of FILE: arch (arch_config.yaml), litellm (config.yaml) or alias-api
        /// (the JSON of GET /api/model-aliases).
        #[arg(long, value_enum)]
        from: ImportFrom,
        /// The configuration file.
        file: PathBuf,
        /// How keys the source reads from environment variables are written: secret (a
        /// reference to a Secret you create from the same variable; for a cluster) or env
        /// (apiKey.env; for a standalone gateway). Keys written literally in FILE always become
        /// Secret references and are never printed.
        #[arg(long, value_enum, default_value = "secret")]
        keys: ImportKeys,
        /// metadata.namespace of every object (default: none, i.e. kubectl's current namespace).
        #[arg(long, short = 'n', value_parser = parse_namespace)]
        namespace: Option<String>,
    },
    /// Client API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the CustomResourceDefinitions, or write them into a directory.
    Crds {
        /// Write llmprovider.yaml and modelalias.yaml here instead of printing.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Gateway {
            config,
            scope,
            listen,
            admin_listen,
            max_body_bytes,
            settle_delay,
            allow_empty,
            no_target_header,
            replica,
            allow_upstream_cidr,
            max_hops,
            server,
            tenancy,
        } => {
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
            };
            let tenancy = tenancy.options(!config.is_empty());
            let options = GatewayOptions {
                config,
                scope: scope.into(),
                listen,
                admin_listen,
                max_body_bytes,
                settle: modelgate::manifest::SettleOptions {
                    delay: settle_delay,
                    allow_empty,
                },
                target_header: !no_target_header,
                egress: EgressOptions {
                    allow: allow_upstream_cidr,
                    max_hops,
                    in_cluster: None,
                },
                server: server.into(),
                tenancy,
            };
            let report = options.config.is_empty().then(|| replica.options()).flatten();
            let stopped = runtime.block_on(async move {
                let signals = match modelgate::signal::Signals::new() {
                    Ok(signals) => signals,
                    Err(e) => return fail(&format!("cannot listen for SIGTERM and SIGINT: {e}")),
                };
                let running = match gateway::start_reporting(options.clone(), report).await {
                    Ok(running) => running,
                    Err(e) => return fail(&format!("the gateway cannot start: {e}")),
                };
                tracing::info!(
                    api = %format!("http://{}", running.addr),
                    admin = %format!("http://{}", running.admin_addr),
                    config = ?options.config,
                    "modelgate gateway serving"
                );
                match running.until_signal(signals).await {
                    Stopped::Drained(_) => ExitCode::SUCCESS,
                    Stopped::Forced(signal) => ExitCode::from(signal.exit_code()),
                }
            });
            // Whatever is still running (a forced exit's connections, blocking DNS lookups)
            // is not waited for.
            runtime.shutdown_background();
            stopped
        }
        Command::Controller {
            scope,
            admin_listen,
            no_leader_election,
            lease_name,
            lease_namespace,
            identity,
            stall_after,
            gateway_namespace,
            usage_store,
            gateway_admin_url,
            admin_token,
            usage_interval,
        } => {
            modelgate::memory::single_arena();
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
            };
            let identity = identity.unwrap_or_else(host_and_pid);
            let lease_namespace = lease_namespace.unwrap_or_else(own_namespace);
            let gateway_namespace = gateway_namespace.unwrap_or_else(|| lease_namespace.clone());
            let lease = (!no_leader_election).then_some(modelgate::controller::LeaseOptions {
                name: lease_name,
                namespace: lease_namespace,
                identity,
            });
            use modelgate::controller::usage::UsageSource;
            let usage = match (usage_store.filter(|u| u != "memory"), gateway_admin_url) {
                (Some(url), _) => Some(UsageSource::Redis(url)),
                (None, Some(url)) => Some(UsageSource::Gateway(
                    url,
                    admin_token
                        .filter(|t| !t.is_empty())
                        .map(modelgate::secret::SecretString::new),
                )),
                (None, None) => None,
            };
            let options = modelgate::controller::ControllerOptions {
                scope: scope.into(),
                admin_listen,
                lease,
                stall_after,
                gateway_namespace,
                usage,
                usage_interval,
            };
            runtime.spawn(modelgate::memory::trim_periodically());
            match runtime.block_on(modelgate::controller::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("the controller stopped: {e}")),
            }
        }
        Command::Validate { paths, check_keys } => {
            let result = modelgate::validate::validate(&paths, check_keys);
            for line in &result.lines {
                println!("{}", line.text);
            }
            let (errors, warnings) = (result.errors(), result.warnings());
            eprintln!(
                "{}: {} LLMProvider(s), {} ModelAlias(es) in {} file(s); {errors} error(s), {warnings} warning(s)",
                if errors == 0 { "valid" } else { "invalid" },
                result.providers,
                result.aliases,
                result.files
            );
            if errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Import {
            from,
            file,
            keys,
            namespace,
        } => import(from, &file, keys, namespace),
        Command::Keys {
            command: KeysCommand::Create { team, namespace, name },
        } => {
            let key = match modelgate::keys::new_key() {
                Ok(key) => key,
                Err(e) => return fail(&e.to_string()),
            };
            let name = match name.map(Ok).unwrap_or_else(|| modelgate::keys::default_name(&team)) {
                Ok(name) => name,
                Err(e) => return fail(&e.to_string()),
            };
            match modelgate::keys::secret_manifest(&key, &name, &namespace, &team) {
                Ok(manifest) => {
                    eprintln!("API key for Team {namespace}/{team} (shown once; only its hash is in the Secret below):\n\n    {}\n", key.expose());
                    print!("{manifest}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Crds { output_dir } => {
            let files = match modelgate::crd::render_crds() {
                Ok(files) => files,
                Err(e) => return fail(&format!("cannot render the CRDs: {e}")),
            };
            for file in files {
                match &output_dir {
                    None => print!("---\n{}", file.yaml),
                    Some(dir) => {
                        let path = dir.join(file.file_name);
                        if let Err(e) = std::fs::write(&path, &file.yaml) {
                            return fail(&format!("cannot write {}: {e}", path.display()));
                        }
                        eprintln!("wrote {}", path.display());
                    }
                }
            }
            ExitCode::SUCCESS
        }
    }
}

fn import(from: ImportFrom, file: &std::path::Path, keys: ImportKeys, namespace: Option<String>) -> ExitCode {
    use modelgate::import::{import_file, ImportError, ImportOptions, KeyMode, Source};
    let source = match from {
        ImportFrom::Arch => Source::Arch,
        ImportFrom::Litellm => Source::Litellm,
        ImportFrom::AliasApi => Source::AliasApi,
    };
    let keys = match keys {
        ImportKeys::Secret => KeyMode::Secret,
        ImportKeys::Env => KeyMode::Env,
    };
    match import_file(source, file, &ImportOptions { keys, namespace }) {
        Ok(imported) => {
            for finding in &imported.findings {
                eprintln!("{finding}");
            }
            print!("{}", imported.yaml);
            let groups = match imported.access_groups {
                0 => String::new(),
                n => format!(" ({n} AccessGroup(s))"),
            };
            eprintln!(
                "imported {} LLMProvider(s) and {} ModelAlias(es){groups} from {}; {} note(s) on what was not carried over",
                imported.providers,
                imported.aliases,
                file.display(),
                imported.findings.len()
            );
            ExitCode::SUCCESS
        }
        Err(ImportError::Invalid { findings, .. }) => {
            for finding in &findings {
                eprintln!("{finding}");
            }
            let errors = findings
                .iter()
                .filter(|f| f.level == modelgate::import::Level::Error)
                .count();
            fail(&format!(
                "{} is not a valid {} configuration: {errors} error(s) above; nothing was printed",
                file.display(),
                source.describe()
            ))
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn parse_namespace(text: &str) -> Result<String, String> {
    modelgate::compiler::rules::check_object_name(text).map(|()| text.to_string())
}

/// The namespace this pod runs in, from its ServiceAccount mount; `default` outside a pod.
fn own_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|ns| ns.trim().to_string())
        .ok()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// `--allow-upstream-cidr`: a CIDR, or a single address.
fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{text}' is not a network: write a CIDR such as 10.0.0.0/8 or fd00::/8, or one address"))
}

/// The async runtime: one thread when the process may use one CPU (its affinity or its cgroup's
/// quota, as `available_parallelism` reads them), which saves the work-stealing scheduler's
/// cross-thread bookkeeping on every wake-up; otherwise a worker per CPU.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    tracing::info!(
        cpus,
        "async runtime: {}",
        if cpus == 1 { "one thread" } else { "a worker per CPU" }
    );
    match cpus {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("modelgate: {message}");
    ExitCode::FAILURE
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
