//! The `modelgate` command: gateway, validate, crds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use modelgate::gateway::{self, GatewayOptions, DEFAULT_MAX_BODY_BYTES};

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
        /// Address of /healthz, /readyz, /metrics and /debug/targets.
        #[arg(long, default_value = "0.0.0.0:12001", env = "MODELGATE_ADMIN_LISTEN")]
        admin_listen: SocketAddr,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES, env = "MODELGATE_MAX_BODY_BYTES")]
        max_body_bytes: usize,
        /// Leave out the `x-modelgate-target: <provider>/<model>` response header, which
        /// names the target that served each response.
        #[arg(long, env = "MODELGATE_NO_TARGET_HEADER")]
        no_target_header: bool,
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
            no_target_header,
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
                target_header: !no_target_header,
            };
            runtime.block_on(async move {
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
                match running.until_signal().await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(&e.to_string()),
                }
            })
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
