//! Problems as lines a person reads: `file: Kind namespace/name: field: message`.

use crate::compiler::{Diagnostic, Severity};
use crate::manifest::Manifests;

/// One line of a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub severity: Severity,
    pub text: String,
}

/// Every load problem and diagnostic, each tied to the file its object came from.
pub fn lines(manifests: &Manifests, diagnostics: &[Diagnostic]) -> Vec<Line> {
    let mut out: Vec<Line> = manifests
        .problems
        .iter()
        .map(|p| Line {
            severity: Severity::Error,
            text: p.to_string(),
        })
        .collect();
    for d in diagnostics {
        let file = manifests
            .origins
            .get(&d.object)
            .map(|o| o.file.display().to_string())
            .unwrap_or_else(|| "(cluster)".to_string());
        let level = if d.severity == Severity::Warning {
            "warning: "
        } else {
            ""
        };
        out.push(Line {
            severity: d.severity,
            text: format!("{file}: {}: {}: {level}{}", d.object, d.field, d.message),
        });
    }
    out
}
