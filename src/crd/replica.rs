//! `GatewayReplica`: one running in-cluster gateway's report of what it serves, written by
//! that gateway and read by the controller, which turns the reports into each object's
//! `Programmed` condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What one gateway replica serves. Each in-cluster gateway keeps one, named after its pod, in
/// its own namespace: it renews it while it runs and deletes it when it stops. A report not
/// renewed within `leaseDurationSeconds` (the gateway crashed) no longer counts.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modelgate.dev",
    version = "v1alpha1",
    kind = "GatewayReplica",
    plural = "gatewayreplicas",
    singular = "gatewayreplica",
    shortname = "gwr",
    category = "modelgate",
    namespaced,
    doc = "A running modelgate gateway replica's report of what it serves (written by the gateway, read by the controller for the Programmed condition).",
    printcolumn(
        name = "Routes",
        type_ = "integer",
        json_path = ".spec.served.routes",
        description = "Aliases in its routing table"
    ),
    printcolumn(
        name = "Scope",
        type_ = "string",
        json_path = ".spec.scope.namespace",
        description = "The one namespace it serves (empty: all)"
    ),
    printcolumn(
        name = "Renewed",
        type_ = "date",
        json_path = ".spec.renewTime",
        description = "When the gateway last confirmed it runs"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayReplicaSpec {
    /// How long after `renewTime` the report stands. The gateway renews it well before then.
    #[schemars(range(min = 1, max = 3600))]
    pub lease_duration_seconds: i32,
    /// When the gateway last confirmed that it runs and serves `served`.
    pub renew_time: MicroTime,
    /// Which LLMProviders and ModelAliases this gateway serves.
    #[serde(default)]
    pub scope: ReplicaScope,
    /// What its routing table is built from.
    pub served: Served,
}

/// A gateway's `--namespace` and `--selector`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaScope {
    /// The one namespace it serves; absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// The label selector its LLMProviders and ModelAliases match; absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub selector: Option<String>,
}

/// The state of the cluster the table being served reflects, as resourceVersions (comparable
/// among objects of one kind since Kubernetes 1.35): every ModelAlias and LLMProvider version
/// up to these is in the table.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Served {
    /// The newest ModelAlias resourceVersion the table includes.
    #[schemars(length(max = 64))]
    pub model_aliases: String,
    /// The newest LLMProvider resourceVersion the table includes.
    #[schemars(length(max = 64))]
    pub llm_providers: String,
    /// How many aliases the table serves.
    #[schemars(range(min = 0))]
    pub routes: i64,
}
