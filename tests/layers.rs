//! The import graph of `src/` obeys the layer map in the README ("Development"): imports run
//! one way, from the front door through the adapters and the pass down to the core, and no
//! modules import each other in a circle. An import that runs back up, or a circle, is a
//! defect to fix, not to document: this test names every one at once.
//!
//! It reads the source, not the compiler's view: `crate::` and `super::` paths (in `use` items,
//! grouped or not, and inline), outside comments, string literals and `#[cfg(test)]` modules.
//! Units are the top-level modules, and the files of `engine`, `reconcile` and `controller`
//! one by one, so circles inside those are found too. The engine core is a crate of its own
//! (`crates/engine-core`): its manifest must not name kube, the catalog or the operator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of each top-level module, from the core (0) up to the front door; a module may import
/// modules of its own layer (without a circle) and of the layers below.
const LAYERS: &[(&str, u8)] = &[
    ("reason", 0),
    ("api", 1),
    ("consent", 1),
    ("engine", 2),
    ("catalog", 3),
    ("import", 3),
    ("reconcile", 4),
    ("controller", 5),
    ("local", 5),
    ("ops", 5),
    ("proxy", 5),
    ("demo", 6),
    ("cli", 6),
];

/// Top-level modules whose files are units of their own.
const SPLIT: &[&str] = &["engine", "reconcile", "controller"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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

/// `src/controller/store.rs` → `["controller", "store"]`; `mod.rs` is its folder's module.
fn module_of(file: &Path, src: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    match last.trim_end_matches(".rs") {
        "mod" | "lib" | "main" => {}
        name => parts.push(name.to_string()),
    }
    parts
}

/// The code of a file without comments, string literals and its test module.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" && lines.peek().is_some_and(|l| l.trim().starts_with("mod tests")) {
            break;
        }
        let mut in_string = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if in_string => {
                    chars.next();
                }
                '"' => in_string = !in_string,
                '/' if !in_string && chars.peek() == Some(&'/') => break,
                c if !in_string => out.push(c),
                _ => {}
            }
        }
        out.push('\n');
    }
    out
}

fn ident(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// The module paths a path starting at `rest` (just after `crate::` or `super::`) names: one,
/// or one per item of a `{…}` group.
fn paths_after(rest: &str) -> Vec<Vec<String>> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut items = vec![String::new()];
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => items.push(String::new()),
                _ => {}
            }
            items.last_mut().unwrap().push(c);
        }
        return items
            .iter()
            .flat_map(|i| paths_after(i.trim_start_matches(',')))
            .collect();
    }
    let mut path = Vec::new();
    let mut s = rest;
    loop {
        let (name, after) = ident(s.trim_start());
        if name.is_empty() {
            break;
        }
        path.push(name.to_string());
        match after.strip_prefix("::") {
            Some(more) if !more.trim_start().starts_with('{') => s = more,
            Some(more) => {
                let mut out: Vec<Vec<String>> = paths_after(more)
                    .into_iter()
                    .map(|tail| path.iter().cloned().chain(tail).collect())
                    .collect();
                out.push(path);
                return out;
            }
            None => break,
        }
    }
    vec![path]
}

/// Every crate-absolute module path the module's code refers to; `children` are the modules
/// declared below it, which `child::…` names relative to it.
fn references(module: &[String], text: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let module = module.to_vec();
    let code = code(text);
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `engine_core::`, `fake_apiserver::`
        }
        out.extend(paths_after(&code[at + "crate::".len()..]));
    }
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("::") || code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric()) {
            continue; // `super::super::` is read from its first `super`
        }
        let mut base = module.clone();
        let mut rest = &code[at..];
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            base.pop();
        }
        out.extend(
            paths_after(rest)
                .into_iter()
                .map(|tail| base.iter().cloned().chain(tail).collect()),
        );
    }
    // Paths relative to this module: `use child::…` and inline `child::item`.
    for child in children {
        let needle = format!("{child}::");
        for (at, _) in code.match_indices(&needle) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            out.extend(
                paths_after(&code[at..])
                    .into_iter()
                    .map(|tail| module.iter().cloned().chain(tail).collect()),
            );
        }
    }
    out
}

/// The unit a module path belongs to: its top-level module, or for modules in `split`, the
/// file below it.
fn unit(path: &[String], modules: &BTreeSet<Vec<String>>, split: &dyn Fn(&str) -> bool) -> Option<String> {
    let top = path.first()?;
    if let Some(second) = path.get(1)
        && split(top)
        && modules.contains(&vec![top.clone(), second.clone()])
    {
        return Some(format!("{top}::{second}"));
    }
    Some(top.clone())
}

fn layer(unit: &str) -> Option<u8> {
    let top = unit.split("::").next().unwrap();
    LAYERS.iter().find(|(m, _)| *m == top).map(|(_, l)| *l)
}

/// Strongly connected components with more than one unit (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The import graph of the crate whose sources are `src`, by unit.
fn graph(src: &Path, split: &dyn Fn(&str) -> bool) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f, src)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(file, src);
        let Some(from_unit) = unit(&from, &modules, split) else {
            continue; // lib.rs and main.rs declare and re-export
        };
        let text = std::fs::read_to_string(file).unwrap();
        let children: BTreeSet<String> = modules
            .iter()
            .filter(|m| m.len() == from.len() + 1 && m.starts_with(&from))
            .map(|m| m.last().unwrap().clone())
            .collect();
        for path in references(&from, &text, &children) {
            let Some(to_unit) = unit(&path, &modules, split) else {
                continue;
            };
            if to_unit != from_unit && modules.iter().any(|m| m.first() == path.first()) {
                graph.entry(from_unit.clone()).or_default().insert(to_unit);
            }
        }
        graph.entry(from_unit).or_default();
    }
    graph
}

fn circle_problems(graph: &BTreeMap<String, BTreeSet<String>>, what: &str) -> Vec<String> {
    circles(graph)
        .into_iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| c.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            format!("import circle in {what}: {} ({})", c.join(", "), edges.join("; "))
        })
        .collect()
}

#[test]
fn imports_run_one_way_and_never_in_a_circle() {
    let graph = graph(&root().join("src"), &|top| SPLIT.contains(&top));
    let mut problems = Vec::new();
    for (from, tos) in &graph {
        let Some(lf) = layer(from) else {
            problems.push(format!(
                "module {from} is in no layer: add it to LAYERS in tests/layers.rs and to the README's map"
            ));
            continue;
        };
        for to in tos {
            match layer(to) {
                Some(lt) if lt > lf => {
                    problems.push(format!("import runs back up: {from} -> {to} (layer {lf} -> {lt})"))
                }
                _ => {}
            }
        }
    }
    problems.extend(circle_problems(&graph, "src/"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The workspace crates have no circles either, file by file.
#[test]
fn no_crate_imports_in_a_circle() {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        let graph = graph(&src, &|_| true);
        assert!(graph.len() > 3, "{} was not read", src.display());
        problems.extend(circle_problems(&graph, &src.display().to_string()));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_engine_core_names_no_kube_catalog_or_operator() {
    let manifest = std::fs::read_to_string(root().join("crates/engine-core/Cargo.toml")).unwrap();
    let deps = manifest.split("[dependencies]").nth(1).unwrap_or_default();
    for forbidden in ["kube", "k8s-openapi", "connector-auth-operator", "reqwest", "tokio"] {
        assert!(
            !deps
                .lines()
                .any(|l| l.split('=').next().is_some_and(|k| k.trim() == forbidden)),
            "crates/engine-core depends on {forbidden}"
        );
    }
    let mut files = Vec::new();
    rust_files(&root().join("crates/engine-core/src"), &mut files);
    for f in files {
        let text = code(&std::fs::read_to_string(&f).unwrap());
        for forbidden in ["kube::", "k8s_openapi::", "connector_auth_operator::"] {
            assert!(!text.contains(forbidden), "{} uses {forbidden}", f.display());
        }
    }
}

/// The reader finds what the test relies on, so a quiet graph is not a blind one.
#[test]
fn the_reader_sees_grouped_nested_and_relative_imports() {
    let module = ["controller".to_string(), "report".to_string()];
    let text = "use super::decide::events::{self, EventPlan};\nuse crate::reconcile::{record::Failure, Action};\n\
                fn f() { crate::api::GROUP; } // crate::ops::x\nconst S: &str = \"crate::cli::y\";\n";
    let found: BTreeSet<String> = references(&module, text, &BTreeSet::new())
        .iter()
        .map(|p| p.join("::"))
        .collect();
    for want in [
        "controller::decide::events",
        "reconcile::record::Failure",
        "reconcile::Action",
        "api::GROUP",
    ] {
        assert!(found.contains(want), "{want} not in {found:?}");
    }
    assert!(
        !found.iter().any(|p| p.starts_with("ops") || p.starts_with("cli")),
        "{found:?}"
    );
    let found = references(
        &["controller".to_string()],
        "pub use store::KubeStore;\nuse leader::{plan, lease::Lease};\nfn f() { pass::run(); }\n",
        &["store".into(), "leader".into(), "pass".into()].into(),
    );
    let found: BTreeSet<String> = found.iter().map(|p| p.join("::")).collect();
    for want in [
        "controller::store::KubeStore",
        "controller::leader::plan",
        "controller::leader::lease::Lease",
        "controller::pass::run",
    ] {
        assert!(found.contains(want), "{want} not in {found:?}");
    }
}
