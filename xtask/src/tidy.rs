//! Architecture checks that run in `cargo xtask tidy` and as a test in `cargo test`.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

use crate::workspace_root;

/// Crates the domain must never reach, directly or transitively (name prefixes).
const FORBIDDEN_IN_DOMAIN: &[&str] = &[
    "actix",
    "diesel",
    "redis",
    "deadpool",
    "tokio",
    "async-std",
    "smol",
    "hyper",
    "reqwest",
    "postgres",
];

/// Docs that must exist at the workspace root.
const REQUIRED_DOCS: &[&str] = &[
    "README.md",
    "docs/ARCHITECTURE.md",
    "docs/PROBLEMS.md",
    "config/default.toml",
];

pub fn run() -> Result<(), String> {
    let offenders = domain_forbidden_dependencies()?;
    if !offenders.is_empty() {
        return Err(format!(
            "keel-domain must stay pure but depends on: {offenders:?}"
        ));
    }
    let missing = missing_docs();
    if !missing.is_empty() {
        return Err(format!("missing docs: {missing:?}"));
    }
    println!("tidy: keel-domain is free of frameworks, drivers and runtimes; docs present");
    Ok(())
}

/// Every forbidden crate in the normal (non-dev, non-build) dependency closure of keel-domain.
pub fn domain_forbidden_dependencies() -> Result<Vec<String>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let root = names
        .iter()
        .find(|(_, name)| **name == "keel-domain")
        .map(|(id, _)| *id)
        .ok_or("keel-domain not found in cargo metadata")?;

    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Some(node) = nodes.get(id) else { continue };
        for dep in node["deps"].as_array().into_iter().flatten() {
            // Only normal dependencies count: dev- and build-dependencies never ship in the crate.
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
            if normal && let Some(dep_id) = dep["pkg"].as_str() {
                stack.push(dep_id);
            }
        }
    }
    Ok(seen
        .into_iter()
        .filter_map(|id| names.get(id).copied())
        .filter(|name| FORBIDDEN_IN_DOMAIN.iter().any(|f| name.starts_with(f)))
        .map(str::to_owned)
        .collect())
}

fn missing_docs() -> Vec<&'static str> {
    let root = workspace_root();
    REQUIRED_DOCS
        .iter()
        .copied()
        .filter(|doc| !root.join(doc).exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_depends_on_no_framework_driver_or_runtime() {
        let offenders = domain_forbidden_dependencies().unwrap();
        assert!(offenders.is_empty(), "keel-domain reaches {offenders:?}");
    }

    #[test]
    fn required_docs_exist() {
        assert!(missing_docs().is_empty(), "missing {:?}", missing_docs());
    }
}
