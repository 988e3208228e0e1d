//! `cargo xtask test-all`: the step table and the runner.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::{Ctx, Failure, bench, checks, conformance, demo, run, soak};

/// The steps of `cargo xtask test-all`, in order.
///
/// Adding a step is one entry here: [`Step::cargo`] for a cargo command, or [`Step::check`]
/// for a check written in Rust (its function goes in `checks.rs`, or in a module of its own
/// when it is also a subcommand, like `conformance.rs`).
#[rustfmt::skip]
pub(crate) const STEPS: &[Step] = &[
    Step::cargo("fmt", &["fmt", "--all", "--", "--check"]),
    Step::cargo("clippy", &["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"]),
    Step::cargo("tests", &["test", "--workspace", "--all-features"]),
    Step::cargo("store-postgres", &["test", "--workspace", "--all-features", "--no-fail-fast", "--test", "postgres", "--test", "distributed", "--", "--ignored"]).requires(POSTGRES_SERVER).note(POSTGRES_NOTE),
    Step::check("conformance", conformance::SHOWS, conformance::check).note(conformance::NETWORK_NOTE),
    Step::check("demo", demo::SHOWS, demo::check),
    Step::check("soak (reduced)", soak::SHOWS, soak::check),
    Step::check("bench (quick)", bench::SHOWS, bench::check),
    Step::cargo("docs", &["doc", "--workspace", "--no-deps", "--all-features"]).env(&[("RUSTDOCFLAGS", "-D warnings")]),
    Step::cargo("cargo-deny", &["deny", "--all-features", "check", "bans", "licenses", "sources"]).needs(CARGO_DENY).note(ADVISORIES_NOT_CHECKED),
    Step::check("dependency guard", checks::DEPENDENCY_GUARD, checks::dependency_guard),
    Step::check("driver guard", checks::DRIVER_GUARD, checks::driver_guard),
    Step::check("lint guard", checks::LINT_GUARD, checks::lint_guard),
    Step::check("MSRV", checks::MSRV, checks::msrv),
];

/// cargo-deny, installed on demand.
const CARGO_DENY: Tool = Tool { subcommand: "deny", package: "cargo-deny" };

/// The PostgreSQL server the store tests run against.
const POSTGRES_SERVER: EnvVar = EnvVar {
    name: "LRO_TEST_POSTGRES_URL",
    how: "these tests need a PostgreSQL server: run `.ci/run`, or `.ci/postgres.sh cargo xtask \
          test-all` (both start a throwaway server, installing PostgreSQL with apt-get when \
          missing), or set LRO_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB to a database \
          where the tests may create schemas and databases",
};

/// The ignored tests of lro-store's tests/postgres.rs (the store suite and more) and
/// lro-cli's tests/distributed.rs (three `lro worker`s, one killed), built as the tests step
/// builds them (nothing to rebuild); both run even when the first fails.
const POSTGRES_NOTE: &str = "the ignored PostgreSQL tests of lro-store and lro-cli, against the \
     server LRO_TEST_POSTGRES_URL names; .ci/run starts one";

const ADVISORIES_NOT_CHECKED: &str = "advisories are configured in deny.toml but not checked \
     here: the advisory database cannot be downloaded on these machines";

/// One step of `cargo xtask test-all`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Step {
    /// Short name, shown in the step line, in `FAILED:` and in the summary.
    pub(crate) name: &'static str,
    action: Action,
    /// A cargo subcommand the step needs, installed with `cargo install` when missing.
    needs: Option<Tool>,
    /// An environment variable the step cannot run without: checked before it runs.
    requires: Option<EnvVar>,
    /// Shown in the step line.
    note: Option<&'static str>,
}

/// An environment variable a step needs, and how to get it set.
#[derive(Clone, Copy, Debug)]
struct EnvVar {
    name: &'static str,
    /// Said when the variable is missing or empty.
    how: &'static str,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    /// `cargo <args>`, run in the workspace root with extra environment variables.
    Cargo { args: &'static [&'static str], env: &'static [(&'static str, &'static str)] },
    /// A check written in Rust. `Ok(Some(note))` means passed with a note for the summary.
    Check { shows: &'static str, run: fn(&Ctx) -> Result<Option<String>, Failure> },
}

/// A cargo subcommand provided by a crate: `cargo <subcommand>` from `cargo install <package>`.
#[derive(Clone, Copy, Debug)]
struct Tool {
    subcommand: &'static str,
    package: &'static str,
}

impl Step {
    /// A step that runs `cargo <args>` in the workspace root.
    const fn cargo(name: &'static str, args: &'static [&'static str]) -> Self {
        Self {
            name,
            action: Action::Cargo { args, env: &[] },
            needs: None,
            requires: None,
            note: None,
        }
    }

    /// A step that runs `run`; `shows` says what it does in the step line.
    const fn check(
        name: &'static str,
        shows: &'static str,
        run: fn(&Ctx) -> Result<Option<String>, Failure>,
    ) -> Self {
        Self { name, action: Action::Check { shows, run }, needs: None, requires: None, note: None }
    }

    /// Sets environment variables for a cargo step (no effect on a check).
    const fn env(mut self, vars: &'static [(&'static str, &'static str)]) -> Self {
        if let Action::Cargo { args, .. } = self.action {
            self.action = Action::Cargo { args, env: vars };
        }
        self
    }

    /// Installs `tool` first if `cargo <subcommand> --version` fails.
    const fn needs(mut self, tool: Tool) -> Self {
        self.needs = Some(tool);
        self
    }

    /// Fails the step before it runs, saying how to set `var`, when `var` is unset or empty.
    const fn requires(mut self, var: EnvVar) -> Self {
        self.requires = Some(var);
        self
    }

    /// Adds a note to the step line.
    const fn note(mut self, note: &'static str) -> Self {
        self.note = Some(note);
        self
    }

    /// What the step runs, as shown in the step line and in `cargo xtask help`.
    pub(crate) fn shows(&self) -> String {
        match self.action {
            Action::Cargo { args, env } => {
                let mut shown = String::new();
                for (key, value) in env {
                    let _ = write!(shown, "{key}={} ", quoted(value));
                }
                shown.push_str("cargo");
                for arg in args {
                    shown.push(' ');
                    shown.push_str(&quoted(arg));
                }
                shown
            }
            Action::Check { shows, .. } => shows.to_owned(),
        }
    }

    fn run(&self, ctx: &Ctx) -> Result<Option<String>, Failure> {
        if let Some(var) = self.requires {
            check_set(var, std::env::var_os(var.name))?;
        }
        if let Some(tool) = self.needs {
            ensure_installed(ctx, tool)?;
        }
        match self.action {
            Action::Cargo { args, env } => {
                run(ctx.cargo().args(args).envs(env.iter().copied()))?;
                Ok(None)
            }
            Action::Check { run, .. } => run(ctx),
        }
    }
}

fn quoted(word: &str) -> String {
    if word.is_empty() || word.contains(char::is_whitespace) {
        format!("\"{word}\"")
    } else {
        word.to_owned()
    }
}

/// Fails when `value` (the value of `var`) is missing or empty, saying how to set it.
fn check_set(var: EnvVar, value: Option<std::ffi::OsString>) -> Result<(), Failure> {
    match value {
        Some(value) if !value.is_empty() => {
            println!("    {} is set", var.name);
            Ok(())
        }
        _ => Err(Failure::check(format!("{} is not set: {}", var.name, var.how))),
    }
}

/// Runs `cargo <subcommand> --version`; when that fails, says so and runs
/// `cargo install --locked <package>`.
fn ensure_installed(ctx: &Ctx, tool: Tool) -> Result<(), Failure> {
    if let Some(version) = tool_version(ctx, tool) {
        println!("    using {version}");
        return Ok(());
    }
    println!(
        "    `cargo {} --version` failed: installing {} first with `cargo install --locked {}`",
        tool.subcommand, tool.package, tool.package
    );
    run(ctx.cargo().args(["install", "--locked", tool.package]))?;
    match tool_version(ctx, tool) {
        Some(version) => {
            println!("    installed {version}");
            Ok(())
        }
        None => Err(Failure::check(format!(
            "`cargo {} --version` still fails after `cargo install --locked {}`",
            tool.subcommand, tool.package
        ))),
    }
}

fn tool_version(ctx: &Ctx, tool: Tool) -> Option<String> {
    let output = ctx
        .cargo()
        .args([tool.subcommand, "--version"])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// What happened to one step.
struct Record {
    elapsed: Duration,
    outcome: Result<Option<String>, Failure>,
}

/// `cargo xtask test-all`.
pub(crate) fn test_all(ctx: &Ctx) -> ExitCode {
    let total = STEPS.len();
    let started = Instant::now();
    let mut records = Vec::with_capacity(total);
    for (index, step) in STEPS.iter().enumerate() {
        let mut line = format!("==> [{}/{total}] {}: {}", index + 1, step.name, step.shows());
        if let Some(note) = step.note {
            let _ = write!(line, " (note: {note})");
        }
        println!("{line}");
        let step_started = Instant::now();
        let outcome = step.run(ctx);
        let elapsed = step_started.elapsed();
        if let Err(failure) = &outcome {
            if let (Some(_), Some(reason)) = (failure.code, &failure.reason) {
                println!("    {reason}");
            }
            println!("FAILED: {} ({})", step.name, failure.describe_code());
            let exit = failure.exit_code();
            records.push(Record { elapsed, outcome });
            print_summary(&records, started.elapsed());
            println!("test-all: FAILED at step {}/{total} ({})", index + 1, step.name);
            return exit;
        }
        records.push(Record { elapsed, outcome });
    }
    print_summary(&records, started.elapsed());
    println!("test-all: all {total} steps passed");
    ExitCode::SUCCESS
}

fn print_summary(records: &[Record], total: Duration) {
    let width = STEPS.iter().map(|step| step.name.len()).max().unwrap_or(0).max(4);
    let mut text = String::from("\n==> test-all summary\n");
    let _ = writeln!(text, "    {:>2}  {:<width$}  {:<24}  {:>9}", "#", "step", "result", "time");
    let mut notes = Vec::new();
    for (index, step) in STEPS.iter().enumerate() {
        let record = records.get(index);
        let result = match record.map(|record| &record.outcome) {
            None => String::from("not run"),
            Some(Ok(None)) => String::from("passed"),
            Some(Ok(Some(note))) => {
                notes.push((index + 1, note.as_str()));
                format!("passed with note [{}]", notes.len())
            }
            Some(Err(failure)) => format!("FAILED ({})", failure.describe_code()),
        };
        let time = record.map_or_else(String::new, |record| duration(record.elapsed));
        let _ =
            writeln!(text, "    {:>2}  {:<width$}  {result:<24}  {time:>9}", index + 1, step.name);
    }
    let _ =
        writeln!(text, "    {:>2}  {:<width$}  {:<24}  {:>9}", "", "total", "", duration(total));
    for (number, (step, note)) in notes.iter().enumerate() {
        let _ = writeln!(text, "    [{}] step {step}: {note}", number + 1);
    }
    print!("{text}");
}

fn duration(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let minutes = elapsed.as_secs() / 60;
        format!("{minutes}m{:04.1}s", seconds - (minutes * 60) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_unique_and_short() {
        for (index, step) in STEPS.iter().enumerate() {
            assert!(!step.name.is_empty() && step.name.len() <= 24, "{}", step.name);
            assert!(
                STEPS[..index].iter().all(|other| other.name != step.name),
                "duplicate step name {}",
                step.name
            );
        }
    }

    #[test]
    fn cargo_steps_show_their_command_line() {
        assert_eq!(STEPS[0].shows(), "cargo fmt --all -- --check");
        let docs = STEPS.iter().find(|step| step.name == "docs").unwrap();
        assert_eq!(
            docs.shows(),
            "RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps --all-features"
        );
    }

    #[test]
    fn the_postgres_step_refuses_to_run_without_its_server() {
        let step = STEPS.iter().find(|step| step.name == "store-postgres").unwrap();
        let var = step.requires.unwrap();
        assert_eq!(var.name, "LRO_TEST_POSTGRES_URL");
        let failure = check_set(var, None).unwrap_err();
        let reason = failure.reason.unwrap();
        assert!(reason.contains("LRO_TEST_POSTGRES_URL is not set") && reason.contains(".ci/run"));
        assert!(check_set(var, Some("".into())).is_err());
        assert!(check_set(var, Some("postgres://u@h/d".into())).is_ok());
        assert_eq!(
            step.shows(),
            "cargo test --workspace --all-features --no-fail-fast --test postgres --test distributed \
             -- --ignored"
        );
        let tests = STEPS.iter().position(|step| step.name == "tests").unwrap();
        assert_eq!(STEPS[tests + 1].name, "store-postgres", "right after the workspace tests");
    }

    #[test]
    fn durations_are_readable() {
        assert_eq!(duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(duration(Duration::from_millis(83_400)), "1m23.4s");
    }
}
