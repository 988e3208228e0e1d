//! Project automation for the `lro` workspace, in the cargo-xtask pattern.
//!
//! `cargo xtask test-all` runs every check CI runs, in order, failing fast;
//! `cargo xtask conformance` replays the conformance table through Python azure-core and the
//! Rust pollers; `cargo xtask demo` runs the demo; `cargo xtask help` lists the subcommands.
//! The crate uses std only, so that it builds in seconds on a clean clone.

mod bench;
mod checks;
mod conformance;
mod demo;
mod soak;
mod steps;

use std::env;
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

/// A subcommand of `cargo xtask` (besides `help`).
struct Subcommand {
    name: &'static str,
    about: &'static str,
    run: fn(&Ctx) -> ExitCode,
}

/// The subcommands, as shown by `cargo xtask help`.
const SUBCOMMANDS: &[Subcommand] = &[
    Subcommand {
        name: "test-all",
        about: "run every CI check in order, stopping at the first failure (steps below)",
        run: steps::test_all,
    },
    Subcommand {
        name: "conformance",
        about: "replay the conformance table through Python azure-core (pinned, in a venv under \
                target/; pip uses PyPI), then through the Rust pollers; then continuation tokens \
                both ways between azure-core and this library",
        run: conformance::command,
    },
    Subcommand {
        name: "soak",
        about: "10,000 operations through the async poller against the mock with faults in \
                their polls (release build): every one must end as told, RSS flat",
        run: soak,
    },
    Subcommand {
        name: "bench",
        about: "the benchmarks over loopback (release build; `--quick`: debug, seconds): prints \
                a table, writes target/bench/results.json (see docs/performance.md)",
        run: bench,
    },
    Subcommand {
        name: "footprint",
        about: "what one request of each stack of the CPU benchmark touches, exactly: \
                instructions and cache lines under callgrind's cache simulation, beside its \
                control (needs valgrind; profiling build; writes target/bench/footprint/)",
        run: footprint,
    },
    Subcommand {
        name: "demo",
        about: "run the tour against the embedded mock service (both pollers, both transports, the lro CLI)",
        run: demo,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> =
        env::args_os().skip(1).map(|arg| arg.to_string_lossy().into_owned()).collect();
    let Some(subcommand) = args.first().map(String::as_str) else {
        print_usage(&mut io::stdout());
        return ExitCode::SUCCESS;
    };
    if matches!(subcommand, "help" | "-h" | "--help") {
        print_usage(&mut io::stdout());
        return ExitCode::SUCCESS;
    }
    let Some(command) = SUBCOMMANDS.iter().find(|command| command.name == subcommand) else {
        eprintln!("error: unknown subcommand `{subcommand}`\n");
        print_usage(&mut io::stderr());
        return ExitCode::from(2);
    };
    let quick_bench = subcommand == "bench" && args[1..] == ["--quick"];
    if args.len() > 1 && !quick_bench {
        eprintln!(
            "error: `cargo xtask {subcommand}` takes no arguments (got: {})\n",
            args[1..].join(" ")
        );
        print_usage(&mut io::stderr());
        return ExitCode::from(2);
    }
    match Ctx::new() {
        Ok(ctx) => (command.run)(&ctx),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_usage(out: &mut dyn Write) {
    let mut text = String::from("Usage: cargo xtask <SUBCOMMAND>\n\nSubcommands:\n");
    let width = SUBCOMMANDS.iter().map(|command| command.name.len()).max().unwrap_or(0).max(10);
    for command in SUBCOMMANDS {
        text.push_str(&format!("  {:<width$} {}\n", command.name, command.about));
    }
    text.push_str(&format!("  {:<width$} {}\n", "help", "print this text"));
    text.push_str("\nSteps of `cargo xtask test-all`:\n");
    for (index, step) in steps::STEPS.iter().enumerate() {
        text.push_str(&format!("  {:>2}. {:<18} {}\n", index + 1, step.name, step.shows()));
    }
    // Nothing sensible to do if stdout/stderr is closed.
    let _ = out.write_all(text.as_bytes());
}

/// `cargo xtask demo`.
fn demo(ctx: &Ctx) -> ExitCode {
    exit_code("demo", demo::run_demo(ctx, true))
}

/// `cargo xtask bench [--quick]`.
fn bench(ctx: &Ctx) -> ExitCode {
    let quick = env::args().skip(2).any(|arg| arg == "--quick");
    exit_code("bench", bench::bench(ctx, quick))
}

/// `cargo xtask footprint`.
fn footprint(ctx: &Ctx) -> ExitCode {
    exit_code("footprint", bench::footprint(ctx))
}

/// `cargo xtask soak`.
fn soak(ctx: &Ctx) -> ExitCode {
    exit_code("soak", soak::full(ctx))
}

/// The exit code of a subcommand named `name` that ended with `result`.
fn exit_code(name: &str, result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("FAILED: {name} ({})", failure.describe_code());
            failure.exit_code()
        }
    }
}

/// Where and with which `cargo` the tasks run.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The workspace root (the parent of the xtask crate's directory).
    pub(crate) root: PathBuf,
    /// `$CARGO` when set (it is, under `cargo xtask`), else `cargo` from `PATH`.
    cargo: OsString,
}

/// xtask's own directory: as `cargo run` exports it (`exported`), else as it was at build time.
/// The build-time value alone can name another checkout: cargo reuses a binary built from a
/// clone with the same sources when the two share a target directory.
fn manifest_dir(exported: Option<OsString>) -> PathBuf {
    exported.map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

impl Ctx {
    fn new() -> Result<Self, String> {
        let manifest_dir = manifest_dir(env::var_os("CARGO_MANIFEST_DIR"));
        let manifest_dir = manifest_dir.as_path();
        let root = manifest_dir.parent().map(Path::to_path_buf).ok_or_else(|| {
            format!(
                "cannot find the workspace root: {} has no parent directory",
                manifest_dir.display()
            )
        })?;
        if !root.join("Cargo.toml").is_file() {
            return Err(format!(
                "cannot find the workspace root: {} has no Cargo.toml",
                root.display()
            ));
        }
        let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
        Ok(Self { root, cargo })
    }

    /// A `cargo` command that runs in the workspace root.
    pub(crate) fn cargo(&self) -> Command {
        let mut command = Command::new(&self.cargo);
        command.current_dir(&self.root);
        command
    }

    /// Any program (a name looked up in `PATH`, or a path), run in the workspace root.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.root);
        command
    }
}

/// Why a command or a check failed.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit code of the failing command, or `None` if it was killed by a signal or
    /// could not be started.
    pub(crate) code: Option<i32>,
    /// What went wrong, when the command's own output does not say it.
    pub(crate) reason: Option<String>,
}

impl Failure {
    /// A failed check of xtask's own (exit code 1).
    pub(crate) fn check(reason: impl Into<String>) -> Self {
        Self { code: Some(1), reason: Some(reason.into()) }
    }

    fn from_status(status: ExitStatus) -> Self {
        Self {
            code: status.code(),
            reason: status.code().is_none().then(|| format!("terminated by a signal ({status})")),
        }
    }

    /// `exit code 101`, or why there is none.
    pub(crate) fn describe_code(&self) -> String {
        match (self.code, &self.reason) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(reason)) => format!("exit code none: {reason}"),
            (None, None) => String::from("exit code none"),
        }
    }

    /// The exit code xtask itself ends with: the failing command's when it fits, else 1.
    pub(crate) fn exit_code(&self) -> ExitCode {
        let code = self
            .code
            .and_then(|code| u8::try_from(code).ok())
            .filter(|code| *code != 0)
            .unwrap_or(1);
        ExitCode::from(code)
    }
}

/// Runs a command with inherited stdio; fails on a non-zero exit.
pub(crate) fn run(command: &mut Command) -> Result<(), Failure> {
    flush_stdout();
    let status = command.status().map_err(|error| spawn_failure(command, &error))?;
    if status.success() { Ok(()) } else { Err(Failure::from_status(status)) }
}

/// Runs a command, capturing its stdout (stderr is inherited); fails on a non-zero exit.
pub(crate) fn capture(command: &mut Command) -> Result<String, Failure> {
    capture_filtered(command, |_| false)
}

/// Like [`capture`], but the stderr lines for which `hide` is true are not shown when the
/// command succeeds (a failing command's stderr is always shown in full).
pub(crate) fn capture_filtered(
    command: &mut Command,
    hide: fn(&str) -> bool,
) -> Result<String, Failure> {
    flush_stdout();
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|error| spawn_failure(command, &error))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines() {
        if !output.status.success() || !hide(line) {
            eprintln!("{line}");
        }
    }
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Failure::from_status(output.status))
    }
}

fn spawn_failure(command: &Command, error: &io::Error) -> Failure {
    Failure {
        code: None,
        reason: Some(format!(
            "could not start `{}`: {error}",
            command.get_program().to_string_lossy()
        )),
    }
}

fn flush_stdout() {
    // Keep our lines in order with the child's output; a closed stdout is not our problem.
    let _ = io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_checkout_cargo_runs_xtask_from_not_the_one_it_was_built_in() {
        let elsewhere = manifest_dir(Some(OsString::from("/elsewhere/xtask")));
        assert_eq!(elsewhere, Path::new("/elsewhere/xtask"));
        assert_eq!(manifest_dir(None), Path::new(env!("CARGO_MANIFEST_DIR")));
    }
}
