//! The crate's modules form no cycles: every top-level module of `src/` may use the ones below it,
//! never one that uses it back (see the `# Layout` map in `src/lib.rs`). Read from the sources:
//! a `crate::module` path in code (not in comments) is a use of that module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level module a source file belongs to (`src/db/api/x.rs` → `db`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_owned();
    (first != "lib" && first != "main" && first != "bin").then_some(first)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// module → the modules its code names, each with one place that names it.
fn uses() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let path = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for to in path.captures_iter(code).map(|c| c[1].to_owned()) {
                if to != from {
                    let at = format!("{}:{}", file.strip_prefix(&src).unwrap().display(), n + 1);
                    graph.entry(from.clone()).or_default().entry(to).or_insert(at);
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one: the modules in order, back to `start`.
fn cycle_from(graph: &BTreeMap<String, BTreeMap<String, String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_owned(), vec![start.to_owned()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flat_map(|m| m.keys()) {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(start.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn top_level_modules_form_no_cycles() {
    let graph = uses();
    assert!(graph.contains_key("outbound") && graph["outbound"].contains_key("db"), "the scan found the crate's uses");
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|cycle| {
            let steps: Vec<String> = cycle.windows(2).map(|w| format!("{} → {} ({})", w[0], w[1], graph[&w[0]][&w[1]])).collect();
            steps.join(", ")
        })
        .collect();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_database_layer_uses_only_the_domain() {
    // db holds statements; the loops that run them and the adapters sit above it
    let graph = uses();
    let used: Vec<&String> = graph.get("db").into_iter().flat_map(|m| m.keys()).collect();
    let allowed = ["domain", "rows"];
    let stray: Vec<String> = used.iter().filter(|m| !allowed.contains(&m.as_str())).map(|m| format!("{m} ({})", graph["db"][*m])).collect();
    assert!(stray.is_empty(), "db uses {stray:?}; it may use only {allowed:?}");
}
