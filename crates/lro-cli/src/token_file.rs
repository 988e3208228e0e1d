//! Continuation tokens on disk: written atomically (a temporary file, then a rename), so that a
//! process killed at any moment leaves either the previous token or the new one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use lro_core::ContinuationToken;

/// Writes `token` to `path` atomically.
pub(crate) fn write(path: &Path, token: &ContinuationToken) -> std::io::Result<()> {
    let temporary = temporary_path(path);
    let mut file = fs::File::create(&temporary)?;
    file.write_all(token.as_str().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)
}

/// Reads a token written by [`write()`] (or any file holding a token and blanks).
pub(crate) fn read(path: &Path) -> std::io::Result<String> {
    Ok(fs::read_to_string(path)?.trim().to_owned())
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_replaced_whole_and_read_back() {
        let dir = std::env::temp_dir().join(format!("lro-cli-token-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("op.token");
        write(&path, &ContinuationToken::from_string("first".into())).unwrap();
        write(&path, &ContinuationToken::from_string("second".into())).unwrap();
        assert_eq!(read(&path).unwrap(), "second");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().filter_map(Result::ok).collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
