//! Files that hold personal data, created readable by their owner only.
//!
//! The ledger keeps the bodies of failed and pending events (bookers' names, emails, answers), and
//! `export` / `failed --out` write whole events. Like ssh and the cloud CLIs with what they keep,
//! we create such directories 0700 and files 0600, whatever the umask. A file or directory that
//! already exists keeps its mode: the user may have chosen it.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::path::Path;

/// Create `dir` and any missing parents, each new one readable by the owner only.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut b = DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Options that create a missing file readable and writable by the owner only.
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Create (or truncate) `path` for writing; a new file is the owner's only.
pub fn create(path: &Path) -> io::Result<File> {
    options().write(true).create(true).truncate(true).open(path)
}

/// Make sure `path` exists, creating it empty and the owner's only if it does not. SQLite then
/// opens it as a new database, and gives its `-wal` and `-shm` files the same mode.
pub fn touch(path: &Path) -> io::Result<()> {
    options().write(true).create(true).truncate(false).open(path).map(drop)
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_and_directories_are_the_owners_only_and_old_ones_keep_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        create_dir_all(&sub).unwrap();
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        let f = sub.join("f");
        touch(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        let g = sub.join("g");
        std::fs::write(&g, b"x").unwrap();
        std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o644)).unwrap();
        create(&g).unwrap();
        assert_eq!(mode(&g), 0o644);
        assert_eq!(std::fs::read(&g).unwrap(), b"", "truncated");
    }

    #[tokio::test]
    async fn an_open_ledger_and_its_wal_shm_and_lock_are_the_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/ledger.db");
        let ledger = crate::ledger::Ledger::open(&path, &"http://x/hook".parse().unwrap(), "event.created").unwrap();
        let files: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().path()).collect();
        let names: Vec<_> = files.iter().filter_map(|f| f.file_name()?.to_str()).collect();
        for suffix in ["", "-wal", "-shm"] {
            assert!(names.contains(&format!("ledger.db{suffix}").as_str()), "{names:?}");
        }
        assert!(names.len() >= 4, "a lock file too: {names:?}");
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        ledger.close().await.unwrap();
    }
}
