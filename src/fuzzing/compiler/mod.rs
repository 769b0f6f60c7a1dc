//! The compiler on arbitrary provider and alias sets.

mod generate;
mod graph;
mod policy;
#[cfg(test)]
mod worlds;

use std::cell::RefCell;
use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};

use crate::compiler::fallbacks::MAX_TIERS;
use crate::compiler::{compile, Compiled, Inputs, ObjectKey, RoutingTable, SecretData, SecretsAndEnv};
use crate::crd::{LLMProvider, ModelAlias};
use crate::gateway::{prepare, ClientPool};
use generate::{Alias, CompilerCase, Provider, MAX_OBJECTS, NAMESPACES};
use graph::Graph;

/// Properties, for any set built from `data`:
/// - compiling never panics, and compiling again (also with its own table as the previous
///   one) gives the same answer;
/// - an alias on a cycle of aliases is never served; every cycle is reported (on at least one
///   alias of each strongly connected group) and every reported cycle is a real one;
/// - a served route has targets whose weights add up to 100, on providers in the table;
///   a disabled alias that owns its name has a disabled route;
/// - a cycle named through fallbacks is a closed walk of written targets and fallbacks; a
///   served route's fallback tiers are at most [`MAX_TIERS`], on providers in the table, and
///   none of them leads back to the route's own alias;
/// - the gateway can prepare the table.
pub fn compiler_graph(data: &[u8]) {
    let Ok(case) = CompilerCase::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    check(&case);
}

fn check(case: &CompilerCase) {
    let providers: Vec<LLMProvider> = case.providers.iter().take(MAX_OBJECTS).map(Provider::build).collect();
    let aliases: Vec<ModelAlias> = case.aliases.iter().take(MAX_OBJECTS).map(Alias::build).collect();
    check_objects(&providers, &aliases);
}

/// The properties, on objects however they were made.
fn check_objects(providers: &[LLMProvider], aliases: &[ModelAlias]) {
    let secrets: SecretData = NAMESPACES
        .iter()
        .map(|ns| {
            let data = BTreeMap::from([("apiKey".to_string(), format!("sk-fuzz-{ns}").into_bytes())]);
            ((ns.to_string(), "keys".to_string()), data)
        })
        .collect();
    let env = |var: &str| (var == "KEY").then(|| "sk-from-env".to_string());
    let credentials = SecretsAndEnv {
        secrets: &secrets,
        env: Some(&env),
        view: crate::compiler::SecretView::All,
    };
    let run = |previous: Option<&RoutingTable>| {
        compile(&Inputs {
            providers,
            aliases,
            credentials: &credentials,
            unreadable: &[],
            previous,
        })
    };
    let compiled = run(None);
    let again = run(None);
    assert_eq!(compiled.diagnostics, again.diagnostics, "compiling twice disagrees");
    assert_eq!(compiled.table, again.table, "compiling twice disagrees");
    let over_itself = run(Some(&compiled.table));
    assert_eq!(
        compiled.diagnostics, over_itself.diagnostics,
        "the previous table changed the answer"
    );
    assert_eq!(
        compiled.table, over_itself.table,
        "the previous table changed the answer"
    );

    let graph = Graph::new(aliases);
    graph.check_cycles(&compiled);
    check_routes(&compiled, &graph);
    prepares(&compiled.table);
}

thread_local! {
    /// Shared across inputs, as across reloads, but renewed now and then: it keeps a
    /// connection pool per upstream address, and the fuzzer invents a great many.
    static CLIENTS: RefCell<(u32, ClientPool)> = RefCell::new((0, ClientPool::new(Default::default())));
}

/// The gateway can serve a table the compiler produced.
pub(super) fn prepares(table: &RoutingTable) {
    CLIENTS.with_borrow_mut(|(uses, clients)| {
        *uses = uses.wrapping_add(1);
        if uses.is_multiple_of(4096) {
            *clients = ClientPool::new(Default::default());
        }
        if let Err(e) = prepare(table, clients, &Default::default()) {
            panic!("the gateway cannot prepare a compiled table: {e}");
        }
    });
}

fn check_routes(compiled: &Compiled, graph: &Graph<'_>) {
    for (name, route) in &compiled.table.routes {
        assert_eq!(name, &route.alias);
        let owner = graph.owners.get(name).expect("a route for a name no alias owns");
        assert_eq!(ObjectKey::of(&graph.aliases[*owner].metadata), route.source);
        if route.disabled.is_none() {
            let sum: f64 = route.targets.iter().map(|t| t.weight).sum();
            assert!((sum - 100.0).abs() < 1e-6, "'{name}' weights add up to {sum}");
        }
        for target in &route.targets {
            assert!(compiled.table.providers.contains_key(&target.provider), "{target:?}");
            assert_eq!(target.chain.first(), Some(name), "{target:?}");
        }
        let tiers = route.extras.as_ref().map_or(&[][..], |e| &e.fallbacks[..]);
        assert!(tiers.len() <= MAX_TIERS, "'{name}' has {} tiers", tiers.len());
        for tier in tiers {
            for target in &tier.targets {
                assert!(compiled.table.providers.contains_key(&target.provider), "{target:?}");
                if route.disabled.is_none() {
                    assert!(
                        !target.chain.contains(name),
                        "'{name}' falls back to itself through '{}': {target:?}",
                        tier.via
                    );
                }
            }
        }
    }
    for (name, &i) in &graph.owners {
        if graph.aliases[i].spec.active == Some(false) {
            let route = compiled.table.route(name);
            assert!(
                route.is_some_and(|r| r.disabled.is_some()),
                "disabled '{name}': {route:?}"
            );
        }
    }
}
