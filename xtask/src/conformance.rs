//! `cargo xtask conformance` (also a `test-all` step): the conformance table replayed through
//! the real Python azure-core, then through the Rust pollers.
//!
//! 1. a venv in `target/conformance-venv` (`python3 -m venv`, when missing or broken);
//! 2. the pinned azure-core / azure-mgmt-core in it (`pip install`, unless `pip show` already
//!    reports exactly those versions: pip's only network use, and it goes to PyPI only);
//! 3. `azure_oracle.py` on `scenarios.json`, report in `target/conformance/python-report.json`;
//! 4. `cargo test -p lro-strategies --test conformance`;
//! 5. continuation tokens, Python → Rust: `python_tokens.py make` on `tests/tokens/cases.json`
//!    writes azure-core's tokens to `target/conformance/python-tokens.json`;
//! 6. `cargo test -p lro-strategies --test tokens` resumes them in Rust (`LRO_PYTHON_TOKENS`) and
//!    writes this library's tokens to `target/conformance/rust-tokens.json`
//!    (`LRO_WRITE_RUST_TOKENS`);
//! 7. continuation tokens, Rust → Python: `python_tokens.py resume` resumes those in azure-core.
//!
//! The first failing part stops the run with a `conformance part N/7 (…) failed: …` line.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{Ctx, Failure, run};

/// The Python interpreter used to create the venv.
const PYTHON: &str = "python3";
/// Oldest Python that azure-core 1.41.0 supports (its `Requires-Python`).
const MIN_PYTHON: (u32, u32) = (3, 10);
const INSTALL_PYTHON: &str = "install Python >= 3.10 with its venv module (Debian/Ubuntu: \
     `apt-get install python3 python3-venv`; Fedora: `dnf install python3`; macOS: \
     `brew install python`) so that `python3` is on PATH, then rerun";

/// The venv, relative to the workspace root.
const VENV: &str = "target/conformance-venv";
/// The table and its Python oracle, relative to the workspace root.
const SCENARIOS: &str = "crates/lro-strategies/tests/conformance/scenarios.json";
const ORACLE: &str = "crates/lro-strategies/tests/conformance/azure_oracle.py";
/// The oracle's JSON report, relative to the workspace root.
const REPORT: &str = "target/conformance/python-report.json";
/// The versions the table was verified against.
const PINNED: &[(&str, &str)] = &[("azure-core", "1.41.0"), ("azure-mgmt-core", "1.6.0")];
/// The Rust replay of the same table.
const RUST_REPLAY: &[&str] = &["test", "-p", "lro-strategies", "--test", "conformance"];
/// The token interoperability cases and their Python side, relative to the workspace root.
const TOKEN_CASES: &str = "crates/lro-strategies/tests/tokens/cases.json";
const TOKEN_SCRIPT: &str = "crates/lro-strategies/tests/tokens/python_tokens.py";
/// Tokens made by azure-core (part 5) and by this library (part 6), relative to the root.
const PYTHON_TOKENS: &str = "target/conformance/python-tokens.json";
const RUST_TOKENS: &str = "target/conformance/rust-tokens.json";
/// The Rust side of the token tests; `--nocapture` shows where tokens were read and written.
const TOKEN_TESTS: &[&str] =
    &["test", "-p", "lro-strategies", "--test", "tokens", "--", "--nocapture"];
/// The variables through which the token tests read azure-core's tokens and write their own.
const PYTHON_TOKENS_ENV: &str = "LRO_PYTHON_TOKENS";
const RUST_TOKENS_ENV: &str = "LRO_WRITE_RUST_TOKENS";

const PARTS: usize = 7;

/// What the step does, as shown in the step line and in `cargo xtask help`.
pub(crate) const SHOWS: &str = "python3 -m venv target/conformance-venv (if missing); pip install \
     azure-core==1.41.0 azure-mgmt-core==1.6.0 (unless installed); azure_oracle.py scenarios.json \
     --report target/conformance/python-report.json; cargo test -p lro-strategies --test conformance; \
     python_tokens.py make cases.json target/conformance/python-tokens.json; \
     LRO_PYTHON_TOKENS=target/conformance/python-tokens.json \
     LRO_WRITE_RUST_TOKENS=target/conformance/rust-tokens.json cargo test -p lro-strategies --test \
     tokens; python_tokens.py resume cases.json target/conformance/rust-tokens.json";

/// The note on the step line.
pub(crate) const NETWORK_NOTE: &str = "network: PyPI only, used by pip when \
     target/conformance-venv lacks the pinned packages";

/// `cargo xtask conformance`.
pub(crate) fn command(ctx: &Ctx) -> ExitCode {
    println!("==> conformance: {SHOWS} (note: {NETWORK_NOTE})");
    match check(ctx) {
        Ok(_) => {
            println!("conformance: passed");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            if let (Some(_), Some(reason)) = (failure.code, &failure.reason) {
                println!("    {reason}");
            }
            println!("FAILED: conformance ({})", failure.describe_code());
            failure.exit_code()
        }
    }
}

/// The `conformance` step of `cargo xtask test-all`.
pub(crate) fn check(ctx: &Ctx) -> Result<Option<String>, Failure> {
    let started = Instant::now();
    let venv_python = ensure_venv(ctx).map_err(|failure| part(1, "venv", failure))?;
    ensure_pinned_packages(ctx, &venv_python)
        .map_err(|failure| part(2, "pinned azure-core", failure))?;
    run_oracle(ctx, &venv_python).map_err(|failure| part(3, "Python oracle", failure))?;
    println!("    parts 1-3 (venv, packages, oracle) took {}", seconds(started.elapsed()));
    println!("    [4/{PARTS}] Rust replay: cargo {}", RUST_REPLAY.join(" "));
    run(ctx.cargo().args(RUST_REPLAY)).map_err(|failure| part(4, "Rust replay", failure))?;
    make_python_tokens(ctx, &venv_python)
        .map_err(|failure| part(5, "azure-core tokens", failure))?;
    run_token_tests(ctx).map_err(|failure| part(6, "tokens in Rust", failure))?;
    resume_rust_tokens(ctx, &venv_python)
        .map_err(|failure| part(7, "Rust tokens in azure-core", failure))?;
    Ok(None)
}

/// Part 5: azure-core makes a token for every case (`python tokens made: N, M failed`).
fn make_python_tokens(ctx: &Ctx, python: &Path) -> Result<(), Failure> {
    println!(
        "    [5/{PARTS}] Python -> Rust: python {TOKEN_SCRIPT} make {TOKEN_CASES} {PYTHON_TOKENS}"
    );
    remove_stale(ctx, PYTHON_TOKENS)?;
    run(ctx
        .command(python)
        .args([TOKEN_SCRIPT, "make", TOKEN_CASES, PYTHON_TOKENS])
        .env("PYTHONDONTWRITEBYTECODE", "1"))?;
    expect_file(ctx, PYTHON_TOKENS, "python_tokens.py make")
}

/// Part 6: the token tests, reading azure-core's fresh tokens and writing this library's.
fn run_token_tests(ctx: &Ctx) -> Result<(), Failure> {
    println!(
        "    [6/{PARTS}] tokens in Rust: {PYTHON_TOKENS_ENV}={PYTHON_TOKENS} \
         {RUST_TOKENS_ENV}={RUST_TOKENS} cargo {}",
        TOKEN_TESTS.join(" ")
    );
    remove_stale(ctx, RUST_TOKENS)?;
    // Absolute paths: cargo runs the test binary in the crate's directory.
    run(ctx
        .cargo()
        .args(TOKEN_TESTS)
        .env(PYTHON_TOKENS_ENV, ctx.root.join(PYTHON_TOKENS))
        .env(RUST_TOKENS_ENV, ctx.root.join(RUST_TOKENS)))?;
    expect_file(ctx, RUST_TOKENS, "the tokens test")
}

/// Part 7: azure-core resumes every Rust token (`python tokens: N passed, M failed`).
fn resume_rust_tokens(ctx: &Ctx, python: &Path) -> Result<(), Failure> {
    println!(
        "    [7/{PARTS}] Rust -> Python: python {TOKEN_SCRIPT} resume {TOKEN_CASES} {RUST_TOKENS}"
    );
    run(ctx
        .command(python)
        .args([TOKEN_SCRIPT, "resume", TOKEN_CASES, RUST_TOKENS])
        .env("PYTHONDONTWRITEBYTECODE", "1"))
}

/// Removes an output of an earlier run, so that a step that writes nothing cannot pass on it.
fn remove_stale(ctx: &Ctx, relative: &str) -> Result<(), Failure> {
    match std::fs::remove_file(ctx.root.join(relative)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(Failure::check(format!("cannot remove the old {relative}: {error}")))
        }
        _ => Ok(()),
    }
}

fn expect_file(ctx: &Ctx, relative: &str, writer: &str) -> Result<(), Failure> {
    if ctx.root.join(relative).is_file() {
        Ok(())
    } else {
        Err(Failure::check(format!("{writer} succeeded but did not write {relative}")))
    }
}

/// Prefixes a failure's reason with the part that failed.
fn part(number: usize, name: &str, failure: Failure) -> Failure {
    let prefix = format!("conformance part {number}/{PARTS} ({name}) failed");
    let reason = match failure.reason {
        Some(reason) => format!("{prefix}: {reason}"),
        None => format!("{prefix} (see its output above)"),
    };
    Failure { code: failure.code, reason: Some(reason) }
}

/// Part 1: a venv with a working pip; returns its interpreter.
fn ensure_venv(ctx: &Ctx) -> Result<PathBuf, Failure> {
    let venv = ctx.root.join(VENV);
    let venv_python = venv_python(&venv);
    if venv_python.is_file() && pip_works(ctx, &venv_python) {
        println!("    [1/{PARTS}] venv: using {VENV}");
        return Ok(venv_python);
    }
    let version = python_version(ctx)?;
    // `--clear` replaces a half-made venv (e.g. one created without ensurepip).
    let clear = venv.exists();
    let mut args = vec!["-m", "venv"];
    if clear {
        args.push("--clear");
    }
    args.push(VENV);
    println!("    [1/{PARTS}] venv: {PYTHON} {} (Python {version})", args.join(" "));
    let output = quiet_output(ctx.command(PYTHON).args(&args))?;
    if !output.status.success() {
        show_output(&output);
        return Err(Failure {
            code: output.status.code(),
            reason: Some(format!(
                "`{PYTHON} {}` failed (output above); on Debian/Ubuntu the venv module is a \
                 separate package: `apt-get install python3-venv`",
                args.join(" ")
            )),
        });
    }
    if !venv_python.is_file() || !pip_works(ctx, &venv_python) {
        return Err(Failure::check(format!(
            "`{PYTHON} -m venv` made {VENV} but `{} -m pip --version` does not work; delete \
             {VENV} and check that `{PYTHON} -m ensurepip --version` works",
            venv_python.display()
        )));
    }
    Ok(venv_python)
}

/// The interpreter inside a venv.
fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

fn pip_works(ctx: &Ctx, python: &Path) -> bool {
    quiet_output(ctx.command(python).args(["-m", "pip", "--version"]))
        .is_ok_and(|output| output.status.success())
}

/// `python3 --version`, checked against [`MIN_PYTHON`].
fn python_version(ctx: &Ctx) -> Result<String, Failure> {
    let output = quiet_output(ctx.command(PYTHON).arg("--version")).map_err(|failure| {
        Failure::check(format!(
            "{} ({INSTALL_PYTHON})",
            failure.reason.unwrap_or_else(|| format!("`{PYTHON} --version` failed"))
        ))
    })?;
    // Python 3 prints `Python 3.x.y` on stdout (very old ones on stderr).
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let version = parse_python_version(&text).filter(|_| output.status.success());
    let Some((major, minor, shown)) = version else {
        return Err(Failure::check(format!(
            "`{PYTHON} --version` did not report a Python version (got: {:?}); {INSTALL_PYTHON}",
            text.trim()
        )));
    };
    if (major, minor) < MIN_PYTHON {
        return Err(Failure::check(format!(
            "`{PYTHON}` is Python {shown}, azure-core {} needs >= {}.{}; {INSTALL_PYTHON}",
            PINNED[0].1, MIN_PYTHON.0, MIN_PYTHON.1
        )));
    }
    Ok(shown)
}

/// `(major, minor, "x.y.z")` from `Python x.y.z`.
fn parse_python_version(text: &str) -> Option<(u32, u32, String)> {
    let version = text.split_whitespace().skip_while(|word| *word != "Python").nth(1)?;
    let mut numbers = version.split('.');
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor, version.to_owned()))
}

/// Part 2: the pinned packages, installed with pip unless already there.
fn ensure_pinned_packages(ctx: &Ctx, python: &Path) -> Result<(), Failure> {
    let wanted = pinned_specs();
    let missing = missing_pins(ctx, python)?;
    if missing.is_empty() {
        println!("    [2/{PARTS}] packages: {} already installed", wanted.join(", "));
        return Ok(());
    }
    println!(
        "    [2/{PARTS}] packages: pip install {} (from PyPI; {})",
        wanted.join(" "),
        missing.join(", ")
    );
    // Not `--quiet`: the output is captured and shown only on failure, then in full (with
    // the warnings that say why a download failed).
    let mut args = vec!["-m", "pip", "install", "--disable-pip-version-check", "--no-input"];
    args.extend(wanted.iter().map(String::as_str));
    let output = quiet_output(ctx.command(python).args(&args))?;
    if !output.status.success() {
        show_output(&output);
        return Err(Failure {
            code: output.status.code(),
            reason: Some(format!(
                "`{} {}` failed (pip's output above); it needs https://pypi.org",
                python.display(),
                args.join(" ")
            )),
        });
    }
    let still_missing = missing_pins(ctx, python)?;
    if !still_missing.is_empty() {
        return Err(Failure::check(format!(
            "after pip install, `pip show` still reports: {}",
            still_missing.join(", ")
        )));
    }
    Ok(())
}

/// `name==version` for every pin.
fn pinned_specs() -> Vec<String> {
    PINNED.iter().map(|(name, version)| format!("{name}=={version}")).collect()
}

/// What `pip show` says about the pins that are not installed at exactly their version.
fn missing_pins(ctx: &Ctx, python: &Path) -> Result<Vec<String>, Failure> {
    let mut args = vec!["-m", "pip", "show", "--disable-pip-version-check"];
    args.extend(PINNED.iter().map(|(name, _)| *name));
    // `pip show` exits 1 when a package is missing; its stdout still lists the others.
    let output = quiet_output(ctx.command(python).args(&args))?;
    let installed = parse_pip_show(&String::from_utf8_lossy(&output.stdout));
    Ok(PINNED
        .iter()
        .filter_map(|(name, version)| {
            match installed.iter().find(|(found, _)| found == name).map(|(_, v)| v.as_str()) {
                Some(found) if found == *version => None,
                Some(found) => Some(format!("{name} {found} installed, {version} wanted")),
                None => Some(format!("{name} not installed")),
            }
        })
        .collect())
}

/// `(normalized name, version)` for every package in `pip show` output.
fn parse_pip_show(text: &str) -> Vec<(String, String)> {
    let mut packages = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("Name:") {
            name = Some(normalize(value.trim()));
        } else if let Some(value) = line.strip_prefix("Version:") {
            if let Some(name) = name.take() {
                packages.push((name, value.trim().to_owned()));
            }
        }
    }
    packages
}

/// A package name as PEP 503 compares it: lower case, runs of `-_.` as one `-`.
fn normalize(name: &str) -> String {
    let mut normalized = String::new();
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !normalized.ends_with('-') {
                normalized.push('-');
            }
        } else {
            normalized.extend(c.to_lowercase());
        }
    }
    normalized
}

/// Part 3: the oracle, with its per-scenario lines and `oracle: N passed, M failed`.
fn run_oracle(ctx: &Ctx, python: &Path) -> Result<(), Failure> {
    println!("    [3/{PARTS}] oracle: python {ORACLE} {SCENARIOS} --report {REPORT}");
    run(ctx
        .command(python)
        .args([ORACLE, SCENARIOS, "--report", REPORT])
        .env("PYTHONDONTWRITEBYTECODE", "1"))
    .map_err(|failure| match failure.code {
        Some(code) => Failure {
            code: Some(code),
            reason: Some(format!(
                "the oracle exited with code {code}: the table does not match azure-core (see \
                 the MISMATCH lines above and {REPORT}) or the oracle could not run"
            )),
        },
        None => failure,
    })
}

/// Runs a command with captured output and no stdin; only spawning can fail here.
fn quiet_output(command: &mut Command) -> Result<Output, Failure> {
    command.stdin(Stdio::null()).output().map_err(|error| {
        Failure::check(format!(
            "could not start `{}`: {error}",
            command.get_program().to_string_lossy()
        ))
    })
}

/// Shows a failed command's captured output, indented.
fn show_output(output: &Output) {
    let mut text = String::new();
    for stream in [&output.stdout, &output.stderr] {
        for line in String::from_utf8_lossy(stream).lines() {
            let _ = writeln!(text, "      | {line}");
        }
    }
    print!("{text}");
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_text_matches_the_constants() {
        assert!(SHOWS.contains(VENV));
        assert!(SHOWS.contains(REPORT));
        assert!(SHOWS.contains(&RUST_REPLAY.join(" ")));
        assert!(SHOWS.contains(&pinned_specs().join(" ")));
        assert!(SCENARIOS.ends_with("scenarios.json") && SHOWS.contains("scenarios.json"));
        assert!(ORACLE.ends_with("azure_oracle.py") && SHOWS.contains("azure_oracle.py"));
        assert!(NETWORK_NOTE.contains("PyPI only"));
        for shown in [PYTHON_TOKENS, RUST_TOKENS, PYTHON_TOKENS_ENV, RUST_TOKENS_ENV] {
            assert!(SHOWS.contains(shown), "{shown}");
        }
        assert!(SHOWS.contains(&TOKEN_TESTS[..5].join(" ")));
        assert!(TOKEN_CASES.ends_with("cases.json") && SHOWS.contains("cases.json"));
        assert!(TOKEN_SCRIPT.ends_with("python_tokens.py") && SHOWS.contains("python_tokens.py"));
    }

    #[test]
    fn reads_pip_show_output() {
        let text = "Name: azure-core\nVersion: 1.41.0\nSummary: Microsoft Azure Core Library\n\
                    Requires: requests, typing-extensions\n---\nName: azure_mgmt.Core\n\
                    Version: 1.6.0\nLocation: /x\n";
        assert_eq!(
            parse_pip_show(text),
            [
                (String::from("azure-core"), String::from("1.41.0")),
                (String::from("azure-mgmt-core"), String::from("1.6.0"))
            ]
        );
        assert!(parse_pip_show("WARNING: Package(s) not found: azure-core\n").is_empty());
    }

    #[test]
    fn reads_the_python_version() {
        assert_eq!(parse_python_version("Python 3.11.7\n"), Some((3, 11, String::from("3.11.7"))));
        assert_eq!(
            parse_python_version("Python 3.13.0rc1"),
            Some((3, 13, String::from("3.13.0rc1")))
        );
        assert_eq!(parse_python_version("command not found"), None);
        assert!(parse_python_version("Python 3.9.2").is_some_and(|(a, b, _)| (a, b) < MIN_PYTHON));
    }

    #[test]
    fn failures_name_their_part() {
        let failure = part(3, "Python oracle", Failure { code: Some(1), reason: None });
        assert_eq!(failure.code, Some(1));
        assert_eq!(
            failure.reason.as_deref(),
            Some("conformance part 3/7 (Python oracle) failed (see its output above)")
        );
        let failure = part(1, "venv", Failure::check("no python3"));
        assert_eq!(
            failure.reason.as_deref(),
            Some("conformance part 1/7 (venv) failed: no python3")
        );
    }

    #[test]
    fn the_venv_interpreter_is_inside_the_venv() {
        let python = venv_python(Path::new("/w/target/conformance-venv"));
        assert!(python.starts_with("/w/target/conformance-venv"));
    }
}
