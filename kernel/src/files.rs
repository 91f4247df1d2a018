//! Files that hold secrets (SQLite databases with password hashes, generated secrets, mails
//! with single-use links) are readable by their owner only: folders 0700, files 0600. A
//! folder or file found looser than that (made by an older version) is tightened.

use std::{io, path::Path};

/// Creates `dir` (and missing parents) and makes `dir` itself owner-only.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    restrict(dir, 0o700)
}

/// Makes sure `path` exists (empty when new) and is owner-only, without touching what it
/// holds: for a file another library opens (SQLite), so it never exists readable by others.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    open_private(path, false).map(drop)?;
    restrict(path, 0o600)
}

/// Writes `contents` to `path`, owner-only from the moment it exists.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut file = open_private(path, true)?;
    file.write_all(contents)?;
    restrict(path, 0o600)
}

#[cfg(unix)]
fn open_private(path: &Path, truncate: bool) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path, truncate: bool) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
}

/// Removes every permission beyond `mode` (a file made before this version, or under a
/// loose umask).
#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))?;
        tracing::info!(path = %path.display(), from = format!("{current:o}"), to = format!("{:o}", current & mode), "tightened permissions: readable by its owner only");
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn new_folders_and_files_are_owner_only_and_loose_ones_are_tightened() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        create_private_dir(&dir).expect("dir");
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("identity.db");
        ensure_private_file(&db).expect("file");
        assert_eq!(mode(&db), 0o600);
        write_private(&dir.join("secret"), b"s").expect("secret");
        assert_eq!(mode(&dir.join("secret")), 0o600);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::write(&db, b"kept").expect("content");
        create_private_dir(&dir).expect("again");
        ensure_private_file(&db).expect("again");
        assert_eq!((mode(&dir), mode(&db)), (0o700, 0o600));
        assert_eq!(
            std::fs::read(&db).expect("read"),
            b"kept",
            "contents untouched"
        );
    }
}
