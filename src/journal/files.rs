//! Private files in the state directory: everything ripcord keeps on disk (journals, approval
//! files, snapshots, incident files, verify results, cleanup plans, reports) is created `0600`
//! in directories it creates `0700`, and opened **without following symlinks**
//! (`O_NOFOLLOW`): a symlink planted where ripcord writes makes the write fail instead of
//! overwriting the link's target.
//!
//! Replacing writes go through a temporary file created with `O_CREAT | O_EXCL` (which never
//! follows a symlink) and renamed over the destination (a rename replaces a symlink itself,
//! never its target).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file ripcord creates in its state directory.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory ripcord creates in its state directory.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents with mode `0700`. An existing `dir` that is a
/// symlink is refused (`ELOOP`-like error), so nothing is written through it.
pub fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::other(format!(
            "{} is a symbolic link; refusing to write through it",
            dir.display()
        )));
    }
    Ok(())
}

/// `options` with mode `0600` for a created file and `O_NOFOLLOW | O_CLOEXEC`.
pub fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    options
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
}

/// Opens `path` with `options`, never following a symlink at `path`; a file it creates is
/// `0600`.
pub fn open_private(path: &Path, options: &mut OpenOptions) -> std::io::Result<File> {
    private(options).open(path)
}

/// Writes `bytes` to `path` (replacing it) as a `0600` file, creating missing parent
/// directories `0700`. Atomic: a temporary file next to it is renamed over it.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir_all(parent)?;
    }
    let tmp = temp_path(path);
    // A leftover (or planted) temporary file or link is removed, never followed.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let mut file = open_private(&tmp, OpenOptions::new().write(true).create_new(true))?;
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `dir/.name.tmp` for `dir/name`.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue13_files_are_0600_in_0700_directories_and_symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/incidents/INC-1.json");
        write_private(&file, b"{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("state/incidents")), 0o700);
        assert_eq!(mode(&dir.path().join("state")), 0o700);

        // A symlink planted where ripcord writes: replaced, its target untouched.
        let target = dir.path().join("victim");
        std::fs::write(&target, "precious").unwrap();
        let link = dir.path().join("state/incidents/INC-2.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_private(&link, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());

        // A planted temporary file link is removed, not followed.
        let tmp = temp_path(&file);
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        write_private(&file, b"again").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");

        // Opening a symlink for appending fails.
        let err = open_private(
            &link_to(&target, dir.path()),
            OpenOptions::new().append(true),
        )
        .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    }

    fn link_to(target: &Path, dir: &Path) -> PathBuf {
        let link = dir.join("link");
        std::os::unix::fs::symlink(target, &link).unwrap();
        link
    }
}
