//! Continuation tokens on disk: written atomically (a temporary file `F.tmp-PID`, synced, renamed
//! over `F`, then the directory synced), so that a process killed at any moment leaves either no
//! file yet, the previous token, or the new one. Temporary files left by killed processes are
//! cleaned up, or used when they hold the only token; reads are bounded.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use lro_core::{ContinuationToken, MAX_TOKEN_LEN};

/// Writes `token` to `path` atomically.
pub(crate) fn write(path: &Path, token: &ContinuationToken) -> io::Result<()> {
    write_text(path, token.as_str())
}

/// Writes `text` and a newline to `path` atomically (also the state file of `lro batch`).
pub(crate) fn write_text(path: &Path, text: &str) -> io::Result<()> {
    let temporary = temporary_path(path, std::process::id());
    // A file of ours from an earlier process of the same id, or a link planted under the name:
    // gone, and the file made anew (never through a link), readable by its owner only.
    let _ = fs::remove_file(&temporary);
    let mut file = private(fs::OpenOptions::new().write(true).create_new(true)).open(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    sync_directory(path)
}

/// `options` creating a file that only its owner can read (a token or a batch's state holds
/// the initial URLs, signatures in their queries included, and the initial bodies).
pub(crate) fn private(options: &mut fs::OpenOptions) -> &mut fs::OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600);
    options
}

/// Makes the rename durable: a crash after `write` returns cannot bring the old file back.
fn sync_directory(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs::File::open(parent)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Reads at most `limit` bytes of `path`; a longer file (or a device that never ends) is an
/// error, and is never read whole.
pub(crate) fn read_bytes_bounded(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file is larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// Reads at most `limit` bytes of `path` as text (trimmed); a longer file is an error, and is
/// never read whole.
pub(crate) fn read_bounded(path: &Path, limit: usize) -> io::Result<String> {
    let text = String::from_utf8(read_bytes_bounded(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file is not text"))?;
    Ok(text.trim().to_owned())
}

/// Reads a token written by [`write()`] (or any file holding a token and blanks), at most
/// [`MAX_TOKEN_LEN`] bytes of it.
pub(crate) fn read(path: &Path) -> io::Result<String> {
    // A token file holds the token and a newline.
    read_bounded(path, MAX_TOKEN_LEN.saturating_add(2))
}

/// What `lro resume --token-file F` found.
#[derive(Debug)]
pub(crate) struct Found {
    /// The token text.
    pub(crate) token: String,
    /// What was found and done, to tell the user.
    pub(crate) notes: Vec<String>,
}

/// Reads the token of `path`, after dealing with temporary files that killed processes left:
/// stale ones are removed; when `path` itself is missing, the newest temporary file holding a
/// valid token is used (and renamed to `path`).
pub(crate) fn recover(path: &Path) -> io::Result<Found> {
    let mut notes = Vec::new();
    let leftovers = leftovers(path);
    if !path.exists() {
        let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = leftovers
            .iter()
            .filter_map(|p| Some((fs::metadata(p).ok()?.modified().ok()?, p.clone())))
            .collect();
        candidates.sort();
        let usable = candidates.iter().rev().find_map(|(_, candidate)| {
            let text = read(candidate).ok()?;
            text.parse::<ContinuationToken>().ok().map(|_| (candidate.clone(), text))
        });
        if let Some((candidate, text)) = usable {
            notes.push(format!(
                "{} was missing; recovered the token from {}, left by a process that was killed",
                path.display(),
                candidate.display()
            ));
            if fs::rename(&candidate, path).and_then(|()| sync_directory(path)).is_err() {
                notes.push(format!("could not rename it to {}", path.display()));
            }
            notes.extend(remove(leftovers.iter().filter(|p| **p != candidate)));
            return Ok(Found { token: text, notes });
        }
        notes.extend(remove(leftovers.iter()));
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no such file, and no temporary file with a token beside it (the run that was to \
                 write it may have stopped before the service first answered){}",
                if notes.is_empty() { String::new() } else { format!("; {}", notes.join("; ")) }
            ),
        ));
    }
    notes.extend(remove(leftovers.iter()));
    let token = read(path)?;
    notes.push(format!("resuming from the token in {} ({} bytes)", path.display(), token.len()));
    Ok(Found { token, notes })
}

/// Removes temporary files of `path` left by processes that are gone (before a run writes it).
pub(crate) fn clean_stale(path: &Path) {
    let _ = remove(leftovers(path).iter()).count();
}

fn remove<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> impl Iterator<Item = String> {
    paths.filter_map(|p| {
        fs::remove_file(p)
            .ok()
            .map(|()| format!("removed {}, left by a killed process", p.display()))
    })
}

/// Temporary files of `path` whose writer is no longer running.
fn leftovers(path: &Path) -> Vec<PathBuf> {
    let (Some(name), Some(parent)) = (path.file_name(), path.parent()) else {
        return Vec::new();
    };
    let dir = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let prefix = format!("{}.tmp-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let pid: u32 = file.strip_prefix(&prefix)?.parse().ok()?;
            (!may_be_in_use(pid, &entry.path())).then(|| entry.path())
        })
        .collect()
}

/// How long a temporary file must have been left untouched to count as stale, where the
/// process table cannot be asked whether its writer still runs.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether the temporary file `path`, written by process `pid`, may still be in use: its
/// process runs (this one always does). Where `/proc` cannot tell (not Linux), a file counts as
/// in use until it is [`STALE_AFTER`] old.
fn may_be_in_use(pid: u32, path: &Path) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    if proc.is_dir() {
        return proc.join(pid.to_string()).exists();
    }
    let age = fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    age.is_none_or(|age| age < STALE_AFTER)
}

fn temporary_path(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{pid}"));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lro-cli-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_default();
        dir
    }

    /// A pid no process has: above the kernel's largest.
    const GONE: u32 = 4_999_999;

    fn token() -> ContinuationToken {
        ContinuationToken::from_string("eyJ2ZXJzaW9uIjoxLCJkYXRhIjp7fX0=".into())
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_is_readable_by_its_owner_only_and_never_written_through_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("private");
        let path = dir.join("op.token");
        let elsewhere = dir.join("elsewhere");
        fs::write(&elsewhere, "untouched").unwrap_or_default();
        let planted = temporary_path(&path, std::process::id());
        std::os::unix::fs::symlink(&elsewhere, &planted).unwrap_or_default();
        write(&path, &token()).unwrap_or_default();
        let mode = fs::metadata(&path).map(|m| m.permissions().mode()).unwrap_or(0o777);
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        assert_eq!(fs::read_to_string(&elsewhere).unwrap_or_default(), "untouched");
        assert_eq!(read(&path).unwrap_or_default(), token().as_str());
        fs::remove_dir_all(&dir).unwrap_or_default();
    }

    #[test]
    fn a_token_file_is_replaced_whole_and_read_back() {
        let dir = scratch("replace");
        let path = dir.join("op.token");
        write(&path, &ContinuationToken::from_string("first".into())).unwrap_or_default();
        write(&path, &ContinuationToken::from_string("second".into())).unwrap_or_default();
        assert_eq!(read(&path).unwrap_or_default(), "second");
        let leftovers: Vec<_> = fs::read_dir(&dir).into_iter().flatten().flatten().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        fs::remove_dir_all(&dir).unwrap_or_default();
    }

    #[test]
    fn stale_temporary_files_are_removed_and_the_token_file_is_used() {
        let dir = scratch("stale");
        let path = dir.join("op.token");
        write(&path, &token()).unwrap_or_default();
        fs::write(temporary_path(&path, GONE), "half a tok").unwrap_or_default();
        fs::write(temporary_path(&path, GONE - 1), token().as_str()).unwrap_or_default();
        let found = recover(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.token, token().as_str());
        assert_eq!(found.notes.iter().filter(|n| n.starts_with("removed")).count(), 2, "{found:?}");
        assert_eq!(fs::read_dir(&dir).into_iter().flatten().count(), 1);
        fs::remove_dir_all(&dir).unwrap_or_default();
    }

    #[test]
    fn a_missing_token_file_is_recovered_from_a_complete_temporary_file() {
        let dir = scratch("recover");
        let path = dir.join("op.token");
        fs::write(temporary_path(&path, GONE), format!("{}\n", token().as_str()))
            .unwrap_or_default();
        let found = recover(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.token, token().as_str());
        assert!(found.notes[0].contains("recovered"), "{found:?}");
        assert!(path.exists(), "renamed into place");

        fs::remove_file(&path).unwrap_or_default();
        fs::write(temporary_path(&path, GONE), "not a token").unwrap_or_default();
        let error = recover(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("no such file"), "{error}");
        fs::remove_dir_all(&dir).unwrap_or_default();
    }

    #[test]
    fn a_temporary_file_of_a_live_process_is_left_alone() {
        let dir = scratch("live");
        let path = dir.join("op.token");
        let mine = temporary_path(&path, std::process::id());
        fs::write(&mine, "in progress").unwrap_or_default();
        clean_stale(&path);
        assert!(mine.exists());
        fs::remove_dir_all(&dir).unwrap_or_default();
    }

    #[test]
    fn reads_stop_at_the_limit() {
        let dir = scratch("bounded");
        let path = dir.join("big");
        fs::write(&path, vec![b'A'; 100]).unwrap_or_default();
        assert!(read_bounded(&path, 99).is_err());
        assert_eq!(read_bounded(&path, 100).unwrap_or_default().len(), 100);
        #[cfg(target_os = "linux")]
        assert!(
            read(Path::new("/dev/zero")).is_err(),
            "an endless file is refused, not read whole"
        );
        fs::remove_dir_all(&dir).unwrap_or_default();
    }
}
