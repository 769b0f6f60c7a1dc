//! The `modelgate` command: gateway, validate, crds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use modelgate::gateway::server::DEFAULT_MAX_HEADER_BYTES;
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

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
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, default_value = "0.0.0.0:12001", env = "MODELGATE_ADMIN_LISTEN")]
        admin_listen: SocketAddr,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES, env = "MODELGATE_MAX_BODY_BYTES")]
        max_body_bytes: usize,
        #[command(flatten)]
        server: ServerArgs,
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
            server,
        } => {
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
            };
            let options = GatewayOptions {
                config,
                scope: scope.into(),
                listen,
                admin_listen,
                max_body_bytes,
                server: server.into(),
            };
            let stopped = runtime.block_on(async move {
                let signals = match modelgate::signal::Signals::new() {
                    Ok(signals) => signals,
                    Err(e) => return fail(&format!("cannot listen for SIGTERM and SIGINT: {e}")),
                };
                let running = match gateway::start(options.clone()).await {
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
        } => {
            modelgate::memory::single_arena();
            let runtime = match runtime() {
                Ok(runtime) => runtime,
                Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
            };
            let identity = identity.unwrap_or_else(|| {
                let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "modelgate".to_string());
                format!("{host}-{}", std::process::id())
            });
            let lease = (!no_leader_election).then_some(modelgate::controller::LeaseOptions {
                name: lease_name,
                namespace: lease_namespace.unwrap_or_else(own_namespace),
                identity,
            });
            let options = modelgate::controller::ControllerOptions {
                scope: scope.into(),
                admin_listen,
                lease,
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

/// The namespace this pod runs in, from its ServiceAccount mount; `default` outside a pod.
fn own_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|ns| ns.trim().to_string())
        .ok()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
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
