//! `modelgate import`: another gateway's configuration as LLMProviders and ModelAliases.
//!
//! Each source format has its own reader (`arch`, `litellm`, `alias_api`) that fills a common
//! [`plan::Plan`]; `writer` turns the plan into YAML, checks it with the compiler that
//! `modelgate validate` uses, and refuses to print output the compiler rejects.

mod alias_api;
mod arch;
mod arch_policy;
mod families;
mod litellm;
mod litellm_deployment;
mod litellm_router;
mod plan;
mod walk;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use plan::Plan;

/// The configuration formats `modelgate import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// An Arch gateway `arch_config.yaml` (`llm_providers`, `model_aliases`).
    Arch,
    /// A LiteLLM proxy `config.yaml` (`model_list`, `router_settings`, `litellm_settings`).
    Litellm,
    /// The JSON of a LiteLLM-based alias admin API (`{"aliases": [...]}`).
    AliasApi,
}

/// How credentials that the source takes from environment variables are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyMode {
    /// A reference to a Secret (created by the user from the same variable, labelled
    /// `modelgate.dev/credential: "true"`); suits a cluster.
    #[default]
    Secret,
    /// `apiKey: {env: NAME}`: the gateway process reads the same variable; suits a standalone
    /// gateway.
    Env,
}

/// Options of an import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    pub keys: KeyMode,
    /// `metadata.namespace` of every object; absent: none (kubectl's current namespace).
    pub namespace: Option<String>,
}

/// Whether a finding stops the import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Invalid input: nothing is printed and the command fails.
    Error,
    /// Something that was not carried over, or carried over approximately.
    Warning,
}

/// A finding about the input, located by file and `line:column` or a path inside the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub file: PathBuf,
    /// `12:3` or a path such as `model_list[2].litellm_params.rpm`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        write!(
            f,
            "{}: {}: {level}: {}",
            self.file.display(),
            self.location,
            self.message
        )
    }
}

/// Why an import produced no output.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a valid {format} configuration: {} error(s)", file.display(), findings.iter().filter(|f| f.level == Level::Error).count())]
    Invalid {
        file: PathBuf,
        format: &'static str,
        /// Every finding, errors and warnings, in input order.
        findings: Vec<Finding>,
    },
    #[error("the imported objects do not pass `modelgate validate` (a bug in the importer; please report it with the input):\n{}", lines.join("\n"))]
    Rejected { lines: Vec<String> },
    #[error("cannot write YAML: {0}")]
    Render(String),
}

/// What an import produced: the YAML to print and what was not carried over.
#[derive(Debug)]
pub struct Imported {
    pub yaml: String,
    pub findings: Vec<Finding>,
    pub providers: usize,
    pub aliases: usize,
    pub access_groups: usize,
}

impl Source {
    /// The name of the format in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Arch => "Arch gateway",
            Source::Litellm => "LiteLLM proxy",
            Source::AliasApi => "alias admin API",
        }
    }
}

/// Reads `file` as `source` and returns the manifests that replace it.
pub fn import_file(source: Source, file: &Path, options: &ImportOptions) -> Result<Imported, ImportError> {
    let text = std::fs::read_to_string(file).map_err(|e| ImportError::Read {
        file: file.to_path_buf(),
        source: e,
    })?;
    import_text(source, &text, file, options)
}

/// [`import_file`] over text already read; `file` names it in findings.
pub fn import_text(source: Source, text: &str, file: &Path, options: &ImportOptions) -> Result<Imported, ImportError> {
    let mut plan = Plan::new(file);
    match source {
        Source::Arch => arch::read(text, &mut plan),
        Source::Litellm => litellm::read(text, &mut plan),
        Source::AliasApi => alias_api::read(text, &mut plan),
    }
    plan.check_cycles();
    if plan.has_errors() {
        return Err(ImportError::Invalid {
            file: file.to_path_buf(),
            format: source.describe(),
            findings: plan.findings,
        });
    }
    writer::write(plan, source, options)
}
