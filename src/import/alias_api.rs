//! The JSON of a LiteLLM-based alias admin API: `{"aliases": [{alias, litellm_model,
//! description, active}]}` (as `GET /api/model-aliases` answers), a bare list of such entries,
//! or one entry (the body of `POST /api/model-aliases/create`).

use super::litellm::empty_spec;
use super::litellm_deployment::deployment;
use super::litellm_router::Globals;
use super::plan::{kube_name, Plan};
use super::walk::{parse_json, Node};

/// Fields of an entry that describe the API's own bookkeeping, not the route.
const BOOKKEEPING: &[&str] = &[
    "usage_count",
    "created_at",
    "updated_at",
    "usage_stats",
    "teams_with_access",
    "id",
];

pub fn read(text: &str, plan: &mut Plan) {
    let value = match parse_json(text) {
        Ok(value) => value,
        Err(e) => return plan.error(&e.location, e.message),
    };
    let root = Node::root(&value);
    let entries = if let Some(list) = root.get("aliases") {
        if !list.value.is_array() {
            return plan.error(&list.at(), "expected a list of aliases");
        }
        list.items()
    } else if value.is_array() {
        root.items()
    } else if value.get("alias").is_some() {
        vec![root]
    } else {
        return plan.error(
            "(top level)",
            "expected {\"aliases\": [{\"alias\": ..., \"litellm_model\": ...}]}, a list of aliases, or one alias",
        );
    };
    let globals = Globals::default();
    for entry in entries {
        if !entry.value.is_object() {
            plan.error(&entry.at(), "expected {\"alias\": ..., \"litellm_model\": ...}");
            continue;
        }
        let Some(name) = entry.get("alias").and_then(|a| a.text()) else {
            plan.error(&entry.at(), "alias is missing");
            continue;
        };
        let Some(model) = entry.get("litellm_model").and_then(|m| m.text()) else {
            plan.error(&entry.at(), format!("alias '{name}': litellm_model is missing"));
            continue;
        };
        let at = format!("{}.litellm_model", entry.at());
        let Some(target) = deployment(plan, &model, None, &globals, &at) else {
            continue;
        };
        let mut spec = empty_spec();
        spec.target = Some(target);
        spec.description = entry
            .get("description")
            .and_then(|d| d.text())
            .filter(|d| !d.is_empty());
        if let Some(active) = entry.get("active") {
            match active.value.as_bool() {
                Some(true) => {}
                Some(false) => spec.active = Some(false),
                None => plan.error(&active.at(), "active must be true or false"),
            }
        }
        for (key, node) in entry.entries() {
            match key.as_str() {
                "alias" | "litellm_model" | "description" | "active" => {}
                "access_groups" => access_groups(plan, &name, &node),
                k if BOOKKEEPING.contains(&k) => {}
                _ => plan.warn(&node.at(), "not carried over: modelgate has no equivalent"),
            }
        }
        plan.add_alias(&name, &entry.at(), spec);
    }
}

/// `access_groups: ["gpt-models", ...]`: the alias joins each group (an AccessGroup per group,
/// listing its aliases by name). A group name that is no Kubernetes name is normalised, with a
/// warning naming both.
fn access_groups(plan: &mut Plan, alias: &str, node: &Node<'_>) {
    if !node.value.is_array() {
        return plan.error(&node.at(), "access_groups must be a list of group names");
    }
    for item in node.items() {
        let Some(group) = item.text() else {
            plan.error(&item.at(), "an access group is named by a string");
            continue;
        };
        let name = kube_name(&group);
        if name.is_empty() {
            plan.error(&item.at(), format!("'{group}' cannot be made a Kubernetes name"));
            continue;
        }
        if name != group {
            plan.warn(
                &item.at(),
                format!("access group '{group}' is written as AccessGroup '{name}' (Kubernetes names are lowercase)"),
            );
        }
        plan.grant(&name, alias);
    }
}
