//! The `test-all` steps written in Rust rather than as a single cargo command.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Ctx, Failure, capture, capture_filtered, run};

/// The package whose dependency tree must stay free of runtimes and HTTP clients.
const GUARDED_PACKAGE: &str = "lro-core";

/// Packages lro-core must not depend on (normal dependencies): a package is forbidden when
/// its name starts with one of these.
const FORBIDDEN_DEPENDENCIES: &[&str] =
    &["tokio", "hyper", "hyper-util", "reqwest", "ureq", "rustls", "mio", "async-std"];

pub(crate) const DEPENDENCY_GUARD: &str = "cargo tree -p lro-core -e normal [--duplicates] --all-features: no tokio*, hyper*, \
     reqwest*, ureq*, rustls*, mio*, async-std*; no duplicate versions";

/// lro-core's normal dependencies: no runtime or HTTP client, no duplicate versions.
pub(crate) fn dependency_guard(ctx: &Ctx) -> Result<Option<String>, Failure> {
    let tree_args =
        ["tree", "-p", GUARDED_PACKAGE, "-e", "normal", "--prefix", "none", "--all-features"];
    println!("    $ cargo {}", tree_args.join(" "));
    let tree = capture(ctx.cargo().args(tree_args))?;
    if tree.lines().next().is_none_or(|line| package_name(line) != GUARDED_PACKAGE) {
        return Err(Failure::check(format!(
            "unexpected `cargo tree` output (its first line should name {GUARDED_PACKAGE}):\n{tree}"
        )));
    }
    let forbidden = forbidden_lines(&tree);
    let packages = tree.lines().filter(|line| !line.trim().is_empty()).count();
    if !forbidden.is_empty() {
        println!(
            "    {GUARDED_PACKAGE} depends on forbidden packages (runtime / HTTP client / TLS):"
        );
        for line in &forbidden {
            println!("      {line}");
        }
        return Err(Failure::check(format!(
            "{} forbidden package line(s) in the dependency tree of {GUARDED_PACKAGE}",
            forbidden.len()
        )));
    }
    println!("    ok: {packages} tree lines, none forbidden");

    let duplicates_args =
        ["tree", "-p", GUARDED_PACKAGE, "-e", "normal", "--duplicates", "--all-features"];
    println!("    $ cargo {}", duplicates_args.join(" "));
    // With no duplicates, `cargo tree --duplicates` warns "nothing to print" and adds a tip.
    let duplicates = capture_filtered(ctx.cargo().args(duplicates_args), |line| {
        line.trim().is_empty()
            || line.starts_with("warning: nothing to print")
            || line.starts_with("To find dependencies that require specific target platforms")
    })?;
    if !duplicates.trim().is_empty() {
        println!("    {GUARDED_PACKAGE} has duplicate versions in its dependency tree:");
        for line in duplicates.lines() {
            println!("      {line}");
        }
        return Err(Failure::check(format!(
            "duplicate package versions in the dependency tree of {GUARDED_PACKAGE}"
        )));
    }
    println!("    ok: no duplicate versions");
    Ok(None)
}

/// The package name a `cargo tree --prefix none` line starts with.
fn package_name(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or("")
}

fn forbidden_lines(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter(|line| {
            let name = package_name(line);
            FORBIDDEN_DEPENDENCIES.iter().any(|prefix| name.starts_with(prefix))
        })
        .collect()
}

/// The files that drive the engine: the sans-IO rule says they must not interpret HTTP.
const DRIVER_FILES: &[&str] = &[
    "crates/lro-core/src/drivers.rs",
    "crates/lro-core/src/poller/blocking.rs",
    "crates/lro-core/src/poller/nonblocking.rs",
];

/// Text that means "interpreting HTTP" in a driver.
const HTTP_INTERPRETATION: &[&str] =
    &["StatusCode", "response.status()", ".headers()", "header::", "HeaderName", "HeaderMap"];

pub(crate) const DRIVER_GUARD: &str = "no StatusCode, response.status(), .headers(), header::, HeaderName, HeaderMap in \
     lro-core drivers.rs, poller/blocking.rs, poller/nonblocking.rs (// lines excepted)";

/// The drivers do not interpret HTTP: that is the engine's job.
pub(crate) fn driver_guard(ctx: &Ctx) -> Result<Option<String>, Failure> {
    let mut hits = 0;
    for file in DRIVER_FILES {
        let text = fs::read_to_string(ctx.root.join(file)).map_err(|error| {
            Failure::check(format!(
                "cannot read {file}: {error} (if it moved, update DRIVER_FILES in xtask/src/checks.rs)"
            ))
        })?;
        let file_hits = http_interpretation(&text);
        for (line_number, pattern, line) in &file_hits {
            println!("    {file}:{line_number}: `{pattern}` in: {}", line.trim());
        }
        if file_hits.is_empty() {
            println!("    ok: {file}");
        }
        hits += file_hits.len();
    }
    if hits > 0 {
        return Err(Failure::check(format!(
            "{hits} place(s) where a driver interprets HTTP; move that logic into the engine/strategies"
        )));
    }
    Ok(None)
}

/// `(1-based line number, pattern, line)` for every forbidden pattern on a non-comment line.
fn http_interpretation(text: &str) -> Vec<(usize, &'static str, &str)> {
    let mut hits = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for pattern in HTTP_INTERPRETATION {
            if line.contains(pattern) {
                hits.push((index + 1, *pattern, line));
            }
        }
    }
    hits
}

pub(crate) const LINT_GUARD: &str = "[lints] workspace = true in every member, and no crate root \
     repeats #![forbid(unsafe_code)] or #![deny(missing_docs)] (declared once in [workspace.lints])";

/// Lints are declared once, in `[workspace.lints]`, and every member inherits them.
pub(crate) fn lint_guard(ctx: &Ctx) -> Result<Option<String>, Failure> {
    let mut problems = Vec::new();
    for manifest in member_manifests(ctx)? {
        let text = read(&manifest)?;
        let shown = manifest.strip_prefix(&ctx.root).unwrap_or(&manifest).display().to_string();
        if toml_value(&text, "lints", "workspace").as_deref() != Some("true") {
            problems.push(format!("{shown}: no `[lints] workspace = true`"));
        }
        let Some(dir) = manifest.parent() else { continue };
        for root in ["src/lib.rs", "src/main.rs"] {
            let path = dir.join(root);
            let Ok(source) = fs::read_to_string(&path) else { continue };
            for attribute in ["#![forbid(unsafe_code)]", "#![deny(missing_docs)]"] {
                if source.lines().any(|line| line.trim() == attribute) {
                    let shown = path.strip_prefix(&ctx.root).unwrap_or(&path).display().to_string();
                    problems.push(format!("{shown} repeats {attribute}"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(None)
    } else {
        for problem in &problems {
            println!("    {problem}");
        }
        Err(Failure::check(format!("{} lint declaration problem(s)", problems.len())))
    }
}

pub(crate) const MSRV: &str = "rust-version.workspace = true in every member; then \
     cargo +<rust-version> check --workspace --all-features if that toolchain is installed";

/// The workspace's `rust-version` is inherited by every member and, when its toolchain is
/// installed, actually builds the workspace.
pub(crate) fn msrv(ctx: &Ctx) -> Result<Option<String>, Failure> {
    let root_manifest = read(&ctx.root.join("Cargo.toml"))?;
    let version = toml_value(&root_manifest, "workspace.package", "rust-version")
        .and_then(|value| unquote(&value))
        .ok_or_else(|| {
            Failure::check(
                "no `rust-version = \"…\"` in [workspace.package] of the root Cargo.toml",
            )
        })?;
    println!("    workspace rust-version: {version}");

    let members = member_manifests(ctx)?;
    let mut not_inherited = Vec::new();
    for manifest in &members {
        let text = read(manifest)?;
        let shown = manifest.strip_prefix(&ctx.root).unwrap_or(manifest).display().to_string();
        if inherits_rust_version(&text) {
            println!("    ok: {shown} has rust-version.workspace = true");
        } else {
            println!("    {shown}: [package] lacks `rust-version.workspace = true`");
            not_inherited.push(shown);
        }
    }
    if !not_inherited.is_empty() {
        return Err(Failure::check(format!(
            "{} member(s) do not inherit the workspace rust-version: {}",
            not_inherited.len(),
            not_inherited.join(", ")
        )));
    }

    let toolchains = ctx
        .command("rustup")
        .args(["toolchain", "list"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned());
    let toolchain = toolchains.as_deref().and_then(|list| matching_toolchain(list, &version));
    let Some(toolchain) = toolchain else {
        let why = if toolchains.is_some() { "" } else { " (`rustup toolchain list` failed)" };
        let note = format!(
            "MSRV {version}: toolchain not installed here; checked by resolver 3 (MSRV-aware \
             dependency resolution) and clippy's incompatible_msrv lint only"
        );
        println!("    !!!");
        println!("    !!! {note}{why}");
        println!("    !!!");
        return Ok(Some(note));
    };
    // `cargo +toolchain` needs the rustup proxy, and $CARGO is the toolchain's own cargo:
    // `rustup run` is the same thing spelled explicitly.
    let args = ["check", "--workspace", "--all-features"];
    println!("    $ rustup run {toolchain} cargo {}", args.join(" "));
    run(ctx
        .command("rustup")
        .args(["run", toolchain, "cargo"])
        .args(args)
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTUP_TOOLCHAIN"))?;
    Ok(None)
}

fn read(path: &Path) -> Result<String, Failure> {
    fs::read_to_string(path)
        .map_err(|error| Failure::check(format!("cannot read {}: {error}", path.display())))
}

/// The manifests of the workspace members, as cargo itself resolves `members`.
fn member_manifests(ctx: &Ctx) -> Result<Vec<PathBuf>, Failure> {
    let args = ["metadata", "--no-deps", "--format-version", "1"];
    let metadata = capture(ctx.cargo().args(args))?;
    let manifests = json_string_values(&metadata, "manifest_path");
    if manifests.is_empty() {
        return Err(Failure::check(format!(
            "`cargo {}` listed no workspace members",
            args.join(" ")
        )));
    }
    Ok(manifests.into_iter().map(PathBuf::from).collect())
}

/// Every string value of `"key":"…"` in compact JSON (as cargo prints it).
fn json_string_values(json: &str, key: &str) -> Vec<String> {
    let needle = format!("\"{key}\":\"");
    let mut values = Vec::new();
    let mut rest = json;
    while let Some(start) = rest.find(&needle) {
        rest = &rest[start + needle.len()..];
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((index, c)) = chars.next() {
            match c {
                '"' => {
                    end = index + 1;
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, escaped)) => value.push(escaped),
                    None => {}
                },
                c => value.push(c),
            }
        }
        values.push(value);
        rest = &rest[end..];
    }
    values
}

/// Whether a member manifest's `[package]` says `rust-version.workspace = true` (in any of
/// TOML's spellings).
fn inherits_rust_version(manifest: &str) -> bool {
    let is_true = |value: Option<String>| value.as_deref() == Some("true");
    is_true(toml_value(manifest, "package", "rust-version.workspace"))
        || is_true(toml_value(manifest, "package.rust-version", "workspace"))
        || toml_value(manifest, "package", "rust-version")
            .is_some_and(|value| squeeze(&value) == "{workspace=true}")
}

/// The raw value of `key` in `[table]` of a simple TOML document (single-line values, bare
/// or dotted keys: enough for the Cargo.toml fields read here).
fn toml_value(text: &str, table: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in text.lines() {
        let line = strip_comment(line).trim();
        if let Some(header) = line.strip_prefix('[') {
            current = squeeze(header.trim_start_matches('[').trim_end_matches(']'));
            continue;
        }
        if current != table {
            continue;
        }
        if let Some((_, value)) = line.split_once('=').filter(|(name, _)| squeeze(name) == key) {
            return Some(value.trim().to_owned());
        }
    }
    None
}

/// The line without its `#` comment (a `#` inside a "string" is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (index, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..index],
            _ => {}
        }
    }
    line
}

fn squeeze(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn unquote(value: &str) -> Option<String> {
    let inner = value
        .strip_prefix('"')
        .and_then(|value| value.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|value| value.strip_suffix('\'')))?;
    (!inner.is_empty()).then(|| inner.to_owned())
}

/// The first installed toolchain for `version` ("1.85" matches "1.85-…", "1.85.0-…", but
/// not "1.850-…").
fn matching_toolchain<'a>(list: &'a str, version: &str) -> Option<&'a str> {
    list.lines().filter_map(|line| line.split_whitespace().next()).find(|name| {
        name.strip_prefix(version)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '-']))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_dependencies_are_found_by_prefix() {
        let tree = "lro-core v0.1.0 (/x)\nbytes v1.0.0\ntokio-util v0.7.0\nhyper v1.0.0\n\
                    mio v1.0.0\nmemchr v2.0.0\nasync-std v1.0.0\nrustls-pki-types v1.0.0\n";
        assert_eq!(
            forbidden_lines(tree),
            [
                "tokio-util v0.7.0",
                "hyper v1.0.0",
                "mio v1.0.0",
                "async-std v1.0.0",
                "rustls-pki-types v1.0.0"
            ]
        );
        assert!(forbidden_lines("lro-core v0.1.0\nhttp v1.0.0\nhttpdate v1.0.0\n").is_empty());
    }

    #[test]
    fn driver_guard_skips_comments_only() {
        let text = "// StatusCode in a comment\n    /// doc: response.status()\n\
                    let s = response.status();\nlet h = req.headers();\nuse http::header::LOCATION;\n\
                    fn f(_: HeaderMap, _: HeaderName, _: StatusCode) {}\nlet s = self.status();\n";
        let hits: Vec<_> = http_interpretation(text)
            .into_iter()
            .map(|(line, pattern, _)| (line, pattern))
            .collect();
        assert_eq!(
            hits,
            [
                (3, "response.status()"),
                (4, ".headers()"),
                (5, "header::"),
                (6, "StatusCode"),
                (6, "HeaderName"),
                (6, "HeaderMap"),
            ]
        );
    }

    #[test]
    fn reads_the_workspace_rust_version() {
        let manifest = "[workspace]\nmembers = [\"a\"]\n\n[workspace.package]\n\
                        edition = \"2024\"\nrust-version = \"1.85\" # MSRV\n\n[package]\nrust-version = \"1.0\"\n";
        assert_eq!(
            toml_value(manifest, "workspace.package", "rust-version")
                .and_then(|value| unquote(&value)),
            Some(String::from("1.85"))
        );
    }

    #[test]
    fn accepts_every_spelling_of_an_inherited_rust_version() {
        assert!(inherits_rust_version("[package]\nname = \"a\"\nrust-version.workspace = true\n"));
        assert!(inherits_rust_version("[package]\nrust-version = { workspace = true }\n"));
        assert!(inherits_rust_version("[package.rust-version]\nworkspace = true\n"));
        assert!(!inherits_rust_version("[package]\nrust-version = \"1.85\"\n"));
        assert!(!inherits_rust_version(
            "[package]\nname = \"a\"\n[dependencies]\nrust-version.workspace = true\n"
        ));
        assert!(!inherits_rust_version("[package]\n# rust-version.workspace = true\n"));
    }

    #[test]
    fn finds_the_msrv_toolchain() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\nnightly-x86_64-unknown-linux-gnu\n\
                    1.850.0-x86_64-unknown-linux-gnu\n1.85.0-x86_64-unknown-linux-gnu\n";
        assert_eq!(matching_toolchain(list, "1.85"), Some("1.85.0-x86_64-unknown-linux-gnu"));
        assert_eq!(matching_toolchain(list, "1.84"), None);
        assert_eq!(matching_toolchain("1.85 (default)\n", "1.85"), Some("1.85"));
    }

    #[test]
    fn reads_manifest_paths_from_cargo_metadata() {
        let json = r#"{"packages":[{"name":"a","manifest_path":"/w/a/Cargo.toml","targets":[]},{"name":"b","manifest_path":"/w/\"b\"/Cargo.toml"},{"manifest_path":"C:\\w\\c\\Cargo.toml"}],"workspace_root":"/w"}"#;
        assert_eq!(
            json_string_values(json, "manifest_path"),
            ["/w/a/Cargo.toml", "/w/\"b\"/Cargo.toml", r"C:\w\c\Cargo.toml"]
        );
    }
}
